import { expect } from "chai";
import { ethers } from "hardhat";
import { TypedDataEncoder } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";
import {
  BPS,
  DELEGATED,
  EDGE_STAKE,
  UNBONDING,
  WATCHDOG_STAKE,
  conflictingStatements,
  makePromise,
  mined,
  now,
  parameter,
  setParameter,
  signPromise,
  slashingEvent,
  slashingFixture,
  type SlashingFixture,
} from "../fixtures/slashing";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import {
  ACK_TYPES,
  STATEMENT_TYPES,
  STORE_PROMISE_TYPES,
  promiseId,
  signAck,
  signStatement,
  statementSlot,
} from "../../sdk/chain/slashing";
import { SmartWalletMock__factory } from "../../typechain-types";

/** `ISlashing.ChallengeStatus`, `FlagStatus`, `Ballot` and `Answer`, in enum order. */
enum ChallengeStatus {
  None,
  Open,
  Answered,
  Acknowledged,
  Slashed,
}
enum FlagStatus {
  None,
  Open,
  Upheld,
  Rejected,
}
enum Ballot {
  NotReviewer,
  Pending,
  Slash,
  Keep,
}
enum Answer {
  Acknowledgement,
  Message,
}

/** LOCAL_PARAMETERS in scripts/lib/deploy.ts, and the contract defaults the local deploy keeps. */
const BOND = 10n * TOKEN;
const FLAG_STAKE = 100n * TOKEN;
const CHALLENGE_WINDOW = 120n;
const REVIEW_WINDOW = 120n;
const PROTECTION = 600n;
const JAIL = 600n;
const SLASH_STORAGE = 500n;
const SLASH_EQUIVOCATION = 1_000n;
const SLASH_VOTED = 1_000n;
const CHALLENGER_REWARD = 2_000n;
const FLAGGER_REWARD = 1_000n;
const REVIEWER_REWARD = 1_000n;

/** Tokens a slash of `bps` takes from the fixture's edge node: its bonded pool and its unbonding pool. */
function edgeSlash(bps: bigint): { bonded: bigint; unbonding: bigint; total: bigint } {
  const bonded = ((EDGE_STAKE + DELEGATED) * bps) / BPS;
  const unbonding = (UNBONDING * bps) / BPS;
  return { bonded, unbonding, total: bonded + unbonding };
}

/** A challenge of the edge node over a fresh promise to the recipient; returns the promise, id and deadline. */
async function openChallenge(f: SlashingFixture, text = "sealed envelope") {
  const { slashing, edge, edgeSigner, challenger, recipient, domain } = f;
  const { message, promise } = await makePromise(recipient.address, text);
  const signature = await signPromise(domain, edgeSigner, promise);
  const id = await slashing.promiseId(edge.address, promise);
  const { timestamp } = await mined(slashing.connect(challenger).challenge(edge.address, promise, signature));
  return { message, promise, signature, id, deadline: timestamp + CHALLENGE_WINDOW };
}

/** The recipient's acknowledgement of `messageHash` from `node`. */
function ack(f: SlashingFixture, messageHash: string, node: string, signer: HardhatEthersSigner = f.recipient) {
  return signAck(signer, f.domain, { messageHash, node });
}

/** Flags the edge node by `flagger` (the first watchdog by default); returns the id, reviewers and deadline. */
async function raiseFlag(f: SlashingFixture, flagger = f.watchdogs[0], node = f.edge.address) {
  const evidence = ethers.keccak256(ethers.toUtf8Bytes(`probe log against ${node}`));
  const { receipt, timestamp, prevRandao } = await mined(f.slashing.connect(flagger).flag(node, evidence));
  const event = slashingEvent(f.slashing, receipt, "NodeFlagged");
  const reviewers = (event.args.reviewers as string[]).map((address) => signerOf(f, address));
  return { flagId: event.args.flagId as bigint, reviewers, deadline: timestamp + REVIEW_WINDOW, prevRandao, evidence };
}

function signerOf(f: SlashingFixture, address: string): HardhatEthersSigner {
  const found = f.signers.find((s) => s.address === address);
  if (!found) throw new Error(`signerOf: no test signer ${address}`);
  return found;
}

/**
 * The reviewers the contract should draw, computed independently: a Fisher-Yates shuffle of the registry's watchdog
 * list driven by keccak256(abi.encode(prevrandao, flagId, draw)), keeping active watchdogs other than the flagger.
 */
async function modelDraw(
  f: SlashingFixture,
  flagId: bigint,
  flagger: string,
  prevRandao: bigint,
  wanted: bigint,
  blockTag: number,
): Promise<string[]> {
  const [, total] = await f.registry.activeNodes(NodeRole.Watchdog, 0, 0, { blockTag });
  const order = Array.from({ length: Number(total) }, (_, i) => BigInt(i));
  const drawn: string[] = [];
  let remaining = total;
  while (BigInt(drawn.length) < wanted && remaining > 0n) {
    const seed = ethers.AbiCoder.defaultAbiCoder().encode(
      ["uint256", "uint256", "uint256"],
      [prevRandao, flagId, total - remaining],
    );
    const pick = BigInt(ethers.keccak256(seed)) % remaining;
    const index = order[Number(pick)];
    remaining -= 1n;
    order[Number(pick)] = order[Number(remaining)];
    const [page] = await f.registry.activeNodes(NodeRole.Watchdog, index, 1, { blockTag });
    if (page.length === 1 && page[0].operator !== flagger) drawn.push(page[0].operator);
  }
  return drawn;
}

/** Takes `watchdog` out of the active set by jailing it: it equivocates and is slashed. */
async function jail(f: SlashingFixture, watchdog: HardhatEthersSigner): Promise<void> {
  const slot = ethers.keccak256(ethers.toUtf8Bytes(`score slot of ${watchdog.address}`));
  const s = await conflictingStatements(f.domain, watchdog, 0n, slot);
  await (
    await f.slashing
      .connect(f.outsider)
      .reportEquivocation(watchdog.address, s.first, s.firstSignature, s.second, s.secondSignature)
  ).wait();
}

describe("Slashing", () => {
  describe("deploy", () => {
    it("is the registry's slasher, pays the timelock as treasury and reads the local parameters", async () => {
      const f = await loadFixture(slashingFixture);
      expect(await f.registry.slasher()).to.equal(await f.slashing.getAddress());
      expect(await f.slashing.treasury()).to.equal(await f.timelock.getAddress());
      expect(f.deployment.contracts.Slashing).to.equal(await f.slashing.getAddress());
      expect(await parameter(f, "ChallengeBond")).to.equal(BOND);
      expect(await parameter(f, "FlagStake")).to.equal(FLAG_STAKE);
      expect(await parameter(f, "ChallengeWindow")).to.equal(CHALLENGE_WINDOW);
      expect(await parameter(f, "ReviewWindow")).to.equal(REVIEW_WINDOW);
      expect(await parameter(f, "FlagProtectionPeriod")).to.equal(PROTECTION);
      expect(await parameter(f, "JailPeriod")).to.equal(JAIL);
      expect(await parameter(f, "ReviewerCount")).to.equal(1n);
      expect(await parameter(f, "SlashStorageBps")).to.equal(SLASH_STORAGE);
      expect(await parameter(f, "SlashEquivocationBps")).to.equal(SLASH_EQUIVOCATION);
      expect(await parameter(f, "SlashVotedBps")).to.equal(SLASH_VOTED);
      expect(await parameter(f, "ChallengerRewardBps")).to.equal(CHALLENGER_REWARD);
      expect(await parameter(f, "FlaggerRewardBps")).to.equal(FLAGGER_REWARD);
      expect(await parameter(f, "ReviewerRewardBps")).to.equal(REVIEWER_REWARD);
      expect(await f.token.balanceOf(await f.slashing.getAddress())).to.equal(0n);
    });

    it("publishes the EIP-712 domain the SDK signs under", async () => {
      const f = await loadFixture(slashingFixture);
      const domain = await f.slashing.eip712Domain();
      expect(domain.name).to.equal("SendingNetwork");
      expect(domain.version).to.equal("1");
      expect(domain.chainId).to.equal(f.domain.chainId);
      expect(domain.verifyingContract).to.equal(f.domain.verifyingContract);
    });

    it("hashes promises, acknowledgements and statements exactly as the SDK's typed data", async () => {
      const f = await loadFixture(slashingFixture);
      const { promise } = await makePromise(f.recipient.address);
      expect(await f.slashing.hashStorePromise(promise)).to.equal(
        TypedDataEncoder.hash(f.domain, STORE_PROMISE_TYPES, promise),
      );
      const a = { messageHash: promise.messageHash, node: f.edge.address };
      expect(await f.slashing.hashAck(a.messageHash, a.node)).to.equal(TypedDataEncoder.hash(f.domain, ACK_TYPES, a));
      const statement = { epoch: 7n, slot: statementSlot("bill", ethers.ZeroHash), content: ethers.id("bill") };
      expect(await f.slashing.hashStatement(statement)).to.equal(
        TypedDataEncoder.hash(f.domain, STATEMENT_TYPES, statement),
      );
      expect(await f.slashing.promiseId(f.edge.address, promise)).to.equal(promiseId(f.edge.address, promise));
    });
  });

  describe("storage challenge", () => {
    it("opens a challenge on a signed, unexpired promise and takes the bond", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, edgeSigner, challenger, recipient, domain } = f;
      const { promise } = await makePromise(recipient.address);
      const signature = await signPromise(domain, edgeSigner, promise);
      const id = await slashing.promiseId(edge.address, promise);
      const tx = slashing.connect(challenger).challenge(edge.address, promise, signature);
      const { timestamp } = await mined(tx);
      const deadline = timestamp + CHALLENGE_WINDOW;
      await expect(tx)
        .to.emit(slashing, "ChallengeOpened")
        .withArgs(
          id,
          edge.address,
          challenger.address,
          promise.messageHash,
          recipient.address,
          promise.expiry,
          BOND,
          deadline,
        );
      await expect(tx).to.changeTokenBalances(token, [challenger, slashing], [-BOND, BOND]);
      const c = await slashing.challengeOf(id);
      expect([c.node, c.deadline, c.status, c.challenger, c.bond, c.messageHash, c.recipient]).to.deep.equal([
        edge.address,
        deadline,
        BigInt(ChallengeStatus.Open),
        challenger.address,
        BOND,
        promise.messageHash,
        recipient.address,
      ]);
    });

    it("pays the bond to the operator when the node answers with the recipient's acknowledgement, for good", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, challenger, signers } = f;
      const { promise, signature, id } = await openChallenge(f);
      const tx = slashing.connect(edge).answerWithAck(id, await ack(f, promise.messageHash, edge.address));
      await expect(tx).to.emit(slashing, "ChallengeAnswered").withArgs(id, edge.address, Answer.Acknowledgement, BOND);
      await expect(tx).to.changeTokenBalances(token, [edge, slashing, challenger], [BOND, -BOND, 0]);
      expect((await slashing.challengeOf(id)).status).to.equal(ChallengeStatus.Acknowledged);
      // The recipient has the message: the node may delete it, so the promise can never be challenged again.
      await expect(slashing.connect(signers[0]).challenge(edge.address, promise, signature))
        .to.be.revertedWithCustomError(slashing, "SlashingPromiseNotChallengeable")
        .withArgs(id, ChallengeStatus.Acknowledged);
    });

    it("lets the node's signer answer in its place, paying the bond to the operator", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, edgeSigner } = f;
      const { message, id } = await openChallenge(f);
      const tx = slashing.connect(edgeSigner).answerWithMessage(id, message);
      await expect(tx).to.emit(slashing, "ChallengeAnswered").withArgs(id, edge.address, Answer.Message, BOND);
      await expect(tx).to.changeTokenBalances(token, [edge, edgeSigner, slashing], [BOND, 0, -BOND]);
    });

    it("refuses an acknowledgement through a contract wallet (ERC-1271): it could revoke it after the node deleted the message", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, edgeSigner, challenger, recipient, domain } = f;
      const wallet = await new SmartWalletMock__factory(recipient).deploy(recipient.address);
      const walletAddress = await wallet.getAddress();
      const { message, promise } = await makePromise(walletAddress);
      const id = await slashing.promiseId(edge.address, promise);
      await slashing
        .connect(challenger)
        .challenge(edge.address, promise, await signPromise(domain, edgeSigner, promise));
      const signature = await ack(f, promise.messageHash, edge.address);
      const digest = await slashing.hashAck(promise.messageHash, edge.address);
      // The wallet itself would accept the signature today...
      expect(await wallet.isValidSignature(digest, signature)).to.equal("0x1626ba7e");
      // ...but an acknowledgement must be proof for good, so only an ECDSA signature by the address itself counts.
      await expect(slashing.connect(edge).answerWithAck(id, signature))
        .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
        .withArgs(walletAddress);
      await expect(slashing.connect(edge).answerWithMessage(id, message)).to.emit(slashing, "ChallengeAnswered");
    });

    it("pays the bond when the node answers with the message, and lets the promise be challenged again", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, outsider } = f;
      const { message, promise, signature, id } = await openChallenge(f);
      const tx = slashing.connect(edge).answerWithMessage(id, message);
      await expect(tx).to.emit(slashing, "ChallengeAnswered").withArgs(id, edge.address, Answer.Message, BOND);
      await expect(tx).to.changeTokenBalances(token, [edge, slashing], [BOND, -BOND]);
      expect((await slashing.challengeOf(id)).status).to.equal(ChallengeStatus.Answered);
      await expect(slashing.connect(edge).answerWithMessage(id, message))
        .to.be.revertedWithCustomError(slashing, "SlashingChallengeNotOpen")
        .withArgs(id, ChallengeStatus.Answered);
      await expect(slashing.connect(outsider).resolveChallenge(id))
        .to.be.revertedWithCustomError(slashing, "SlashingChallengeNotOpen")
        .withArgs(id, ChallengeStatus.Answered);
      // Holding it once does not prove holding it until expiry: a new challenge (and bond) asks again.
      await expect(slashing.connect(outsider).challenge(edge.address, promise, signature))
        .to.emit(slashing, "ChallengeOpened")
        .withArgs(
          id,
          edge.address,
          outsider.address,
          promise.messageHash,
          promise.recipient,
          promise.expiry,
          BOND,
          anyValue,
        );
      expect((await slashing.challengeOf(id)).challenger).to.equal(outsider.address);
      expect(await token.balanceOf(await slashing.getAddress())).to.equal(BOND);
    });

    it("slashes a node whose storage challenge expires unanswered: node, delegator and unbonding stake pro rata", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, registry, token, edge, delegator, unbonder, challenger, outsider, treasury } = f;
      const { promise, signature, id, deadline } = await openChallenge(f);
      const [entry] = await registry.unbondings(unbonder.address);
      const unbondingEntry = { operator: entry.operator, releaseTime: entry.releaseTime, shares: entry.shares };
      await time.increaseTo(deadline);

      const cut = edgeSlash(SLASH_STORAGE);
      expect(cut.total).to.equal(800n * TOKEN);
      const reward = (cut.total * CHALLENGER_REWARD) / BPS;
      const tx = slashing.connect(outsider).resolveChallenge(id);
      const { timestamp } = await mined(tx);
      await expect(tx)
        .to.emit(slashing, "ChallengeSlashed")
        .withArgs(id, edge.address, challenger.address, cut.total, reward, cut.total - reward);
      await expect(tx)
        .to.emit(registry, "NodeSlashed")
        .withArgs(edge.address, SLASH_STORAGE, cut.bonded, cut.unbonding, timestamp + JAIL);
      await expect(tx).to.changeTokenBalances(
        token,
        [challenger, treasury, registry, slashing, outsider, edge],
        [BOND + reward, cut.total - reward, -cut.total, -BOND, 0, 0],
      );

      // 5% from everyone behind the node, bonded or unbonding.
      expect(await registry.stakeOf(edge.address, edge.address)).to.equal(9_500n * TOKEN);
      expect(await registry.stakeOf(edge.address, delegator.address)).to.equal(3_800n * TOKEN);
      expect(await registry.unbondingValue(unbondingEntry)).to.equal(1_900n * TOKEN);
      expect(await registry.isActive(edge.address)).to.equal(false);
      expect((await registry.node(edge.address)).jailedUntil).to.equal(timestamp + JAIL);
      expect((await slashing.challengeOf(id)).status).to.equal(ChallengeStatus.Slashed);
      expect(await token.balanceOf(await slashing.getAddress())).to.equal(0n);

      // A slashed promise never slashes again.
      await expect(slashing.connect(challenger).challenge(edge.address, promise, signature))
        .to.be.revertedWithCustomError(slashing, "SlashingPromiseNotChallengeable")
        .withArgs(id, ChallengeStatus.Slashed);
      await expect(slashing.connect(outsider).resolveChallenge(id))
        .to.be.revertedWithCustomError(slashing, "SlashingChallengeNotOpen")
        .withArgs(id, ChallengeStatus.Slashed);
    });

    it("answers until the second before the deadline and resolves from the deadline on", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, outsider } = f;
      const first = await openChallenge(f, "first");
      await time.setNextBlockTimestamp(first.deadline - 1n);
      await expect(slashing.connect(edge).answerWithMessage(first.id, first.message)).to.emit(
        slashing,
        "ChallengeAnswered",
      );

      const second = await openChallenge(f, "second");
      await time.setNextBlockTimestamp(second.deadline - 1n);
      await expect(slashing.connect(outsider).resolveChallenge(second.id))
        .to.be.revertedWithCustomError(slashing, "SlashingChallengeWindowOpen")
        .withArgs(second.id, second.deadline);
      await time.setNextBlockTimestamp(second.deadline);
      await expect(slashing.connect(edge).answerWithMessage(second.id, second.message))
        .to.be.revertedWithCustomError(slashing, "SlashingChallengeWindowClosed")
        .withArgs(second.id, second.deadline);
      await expect(slashing.connect(outsider).resolveChallenge(second.id)).to.emit(slashing, "ChallengeSlashed");
    });

    it("pays the challenger its bond back and the treasury nothing when the node has no stake left", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, registry, token, edge2, challenger, recipient, outsider, domain, treasury } = f;
      const { promise } = await makePromise(recipient.address);
      const signature = await signPromise(domain, edge2, promise);
      const id = await slashing.promiseId(edge2.address, promise);
      const { timestamp } = await mined(slashing.connect(challenger).challenge(edge2.address, promise, signature));
      await (await registry.connect(edge2).unbond(edge2.address, EDGE_STAKE)).wait();
      await time.increase(3_600);
      await (await registry.connect(edge2).withdraw()).wait();
      expect(await now()).to.be.greaterThan(timestamp + CHALLENGE_WINDOW);
      const tx = slashing.connect(outsider).resolveChallenge(id);
      await expect(tx).to.emit(slashing, "ChallengeSlashed").withArgs(id, edge2.address, challenger.address, 0, 0, 0);
      await expect(tx).to.changeTokenBalances(token, [challenger, treasury], [BOND, 0]);
    });

    describe("reverts", () => {
      it("refuses to challenge a node that is not an edge node", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, challenger, recipient, outsider, watchdogs, domain } = f;
        const { promise } = await makePromise(recipient.address);
        const w = watchdogs[0];
        await expect(slashing.connect(challenger).challenge(w.address, promise, await signPromise(domain, w, promise)))
          .to.be.revertedWithCustomError(slashing, "SlashingWrongRole")
          .withArgs(w.address, NodeRole.Watchdog, NodeRole.Edge);
        await expect(
          slashing
            .connect(challenger)
            .challenge(outsider.address, promise, await signPromise(domain, outsider, promise)),
        )
          .to.be.revertedWithCustomError(slashing, "SlashingWrongRole")
          .withArgs(outsider.address, NodeRole.None, NodeRole.Edge);
      });

      it("refuses an expired promise", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, edgeSigner, challenger, recipient, domain } = f;
        const { promise } = await makePromise(recipient.address);
        const signature = await signPromise(domain, edgeSigner, promise);
        await time.setNextBlockTimestamp(promise.expiry);
        await expect(slashing.connect(challenger).challenge(edge.address, promise, signature))
          .to.be.revertedWithCustomError(slashing, "SlashingPromiseExpired")
          .withArgs(promise.expiry, promise.expiry);
      });

      it("refuses a promise not signed by the node's registered signer", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, edgeSigner, challenger, recipient, domain } = f;
        const { promise } = await makePromise(recipient.address);
        // Signed by the operator, not the signer it registered.
        await expect(
          slashing.connect(challenger).challenge(edge.address, promise, await signPromise(domain, edge, promise)),
        )
          .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
          .withArgs(edgeSigner.address);
        // A valid signature over another promise.
        const other = { ...promise, expiry: promise.expiry + 1n };
        await expect(
          slashing.connect(challenger).challenge(edge.address, promise, await signPromise(domain, edgeSigner, other)),
        )
          .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
          .withArgs(edgeSigner.address);
        // Garbage.
        await expect(slashing.connect(challenger).challenge(edge.address, promise, "0x1234"))
          .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
          .withArgs(edgeSigner.address);
        // Signed under another domain (another chain).
        const foreign = { ...domain, chainId: 1n };
        await expect(
          slashing
            .connect(challenger)
            .challenge(edge.address, promise, await signPromise(foreign, edgeSigner, promise)),
        )
          .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
          .withArgs(edgeSigner.address);
      });

      it("refuses promises signed by a signer the node has since replaced (the rotation revokes them)", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, registry, edge, edgeSigner, challenger, recipient, outsider, domain } = f;
        const { promise } = await makePromise(recipient.address);
        const signature = await signPromise(domain, edgeSigner, promise);
        await (
          await registry.connect(edge).updateNode("12D3KooWRotated", ["/ip4/10.0.0.9/tcp/4001"], outsider.address)
        ).wait();
        await expect(slashing.connect(challenger).challenge(edge.address, promise, signature))
          .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
          .withArgs(outsider.address);
      });

      it("refuses a second challenge of a promise while one is open", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, outsider } = f;
        const { promise, signature, id } = await openChallenge(f);
        await expect(slashing.connect(outsider).challenge(edge.address, promise, signature))
          .to.be.revertedWithCustomError(slashing, "SlashingPromiseNotChallengeable")
          .withArgs(id, ChallengeStatus.Open);
      });

      it("refuses a challenger that has not approved the bond", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, token, edge, edgeSigner, challenger, recipient, domain } = f;
        await (await token.connect(challenger).approve(await slashing.getAddress(), BOND - 1n)).wait();
        const { promise } = await makePromise(recipient.address);
        await expect(
          slashing.connect(challenger).challenge(edge.address, promise, await signPromise(domain, edgeSigner, promise)),
        )
          .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
          .withArgs(await slashing.getAddress(), BOND - 1n, BOND);
      });

      it("refuses answers to a challenge that does not exist", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, outsider } = f;
        const id = ethers.id("no such promise");
        await expect(slashing.connect(edge).answerWithMessage(id, "0x"))
          .to.be.revertedWithCustomError(slashing, "SlashingChallengeNotOpen")
          .withArgs(id, ChallengeStatus.None);
        await expect(slashing.connect(edge).answerWithAck(id, "0x"))
          .to.be.revertedWithCustomError(slashing, "SlashingChallengeNotOpen")
          .withArgs(id, ChallengeStatus.None);
        await expect(slashing.connect(outsider).resolveChallenge(id))
          .to.be.revertedWithCustomError(slashing, "SlashingChallengeNotOpen")
          .withArgs(id, ChallengeStatus.None);
      });

      it("refuses answers from anyone but the node's operator or signer", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, recipient, challenger } = f;
        const { message, promise, id } = await openChallenge(f);
        for (const caller of [recipient, challenger]) {
          await expect(slashing.connect(caller).answerWithMessage(id, message))
            .to.be.revertedWithCustomError(slashing, "SlashingNotNodeOrSigner")
            .withArgs(caller.address, edge.address);
          await expect(slashing.connect(caller).answerWithAck(id, await ack(f, promise.messageHash, edge.address)))
            .to.be.revertedWithCustomError(slashing, "SlashingNotNodeOrSigner")
            .withArgs(caller.address, edge.address);
        }
      });

      it("refuses an acknowledgement not signed by the recipient for this message and node", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, edge2, recipient, outsider } = f;
        const { promise, id } = await openChallenge(f);
        const forgeries = [
          await ack(f, promise.messageHash, edge.address, outsider), // someone else
          await ack(f, ethers.id("another message"), edge.address), // another message
          await ack(f, promise.messageHash, edge2.address), // delivered by another node
          "0x",
        ];
        for (const signature of forgeries) {
          await expect(slashing.connect(edge).answerWithAck(id, signature))
            .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
            .withArgs(recipient.address);
        }
      });

      it("refuses a message whose hash is not the promise's", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge } = f;
        const { promise, id } = await openChallenge(f);
        const wrong = ethers.toUtf8Bytes("a different envelope");
        await expect(slashing.connect(edge).answerWithMessage(id, wrong))
          .to.be.revertedWithCustomError(slashing, "SlashingMessageMismatch")
          .withArgs(promise.messageHash, ethers.keccak256(wrong));
      });

      it("refuses late answers", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge } = f;
        const { promise, message, id, deadline } = await openChallenge(f);
        await time.increaseTo(deadline);
        await expect(slashing.connect(edge).answerWithMessage(id, message))
          .to.be.revertedWithCustomError(slashing, "SlashingChallengeWindowClosed")
          .withArgs(id, deadline);
        await expect(slashing.connect(edge).answerWithAck(id, await ack(f, promise.messageHash, edge.address)))
          .to.be.revertedWithCustomError(slashing, "SlashingChallengeWindowClosed")
          .withArgs(id, deadline);
      });
    });
  });

  describe("equivocation", () => {
    it("slashes a node that signed two contents for one (epoch, slot) at once, and pays the reporter", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, registry, token, edge, edgeSigner, delegator, outsider, domain, treasury } = f;
      const slot = statementSlot("bill", ethers.id("recipient key hash"));
      const s = await conflictingStatements(domain, edgeSigner, 3n, slot);
      const cut = edgeSlash(SLASH_EQUIVOCATION);
      const reward = (cut.total * CHALLENGER_REWARD) / BPS;
      const tx = slashing
        .connect(outsider)
        .reportEquivocation(edge.address, s.first, s.firstSignature, s.second, s.secondSignature);
      const { timestamp } = await mined(tx);
      await expect(tx)
        .to.emit(slashing, "EquivocationSlashed")
        .withArgs(
          edge.address,
          3n,
          slot,
          outsider.address,
          s.first.content,
          s.second.content,
          cut.total,
          reward,
          cut.total - reward,
        );
      await expect(tx)
        .to.emit(registry, "NodeSlashed")
        .withArgs(edge.address, SLASH_EQUIVOCATION, cut.bonded, cut.unbonding, timestamp + JAIL);
      await expect(tx).to.changeTokenBalances(
        token,
        [outsider, treasury, registry, slashing],
        [reward, cut.total - reward, -cut.total, 0],
      );
      expect(await registry.stakeOf(edge.address, delegator.address)).to.equal(3_600n * TOKEN);
      expect(await registry.isActive(edge.address)).to.equal(false);
      expect(await slashing.equivocationSlashed(edge.address, 3n, slot)).to.equal(true);
      expect(await slashing.equivocationSlashed(edge.address, 4n, slot)).to.equal(false);
    });

    it("slashes each (node, epoch, slot) once, and other slots of the same epoch on their own", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, edgeSigner, outsider, challenger, domain } = f;
      const slot = statementSlot("inboxHead", ethers.zeroPadValue(f.recipient.address, 32));
      const s = await conflictingStatements(domain, edgeSigner, 3n, slot);
      await (
        await slashing
          .connect(outsider)
          .reportEquivocation(edge.address, s.first, s.firstSignature, s.second, s.secondSignature)
      ).wait();
      // The same pair, the pair swapped, and a third content for the slot.
      const third = { ...s.first, content: ethers.id("third head") };
      const thirdSignature = await signStatement(edgeSigner, domain, third);
      for (const [a, sa, b, sb] of [
        [s.first, s.firstSignature, s.second, s.secondSignature],
        [s.second, s.secondSignature, s.first, s.firstSignature],
        [s.first, s.firstSignature, third, thirdSignature],
      ] as const) {
        await expect(slashing.connect(challenger).reportEquivocation(edge.address, a, sa, b, sb))
          .to.be.revertedWithCustomError(slashing, "SlashingEquivocationAlreadySlashed")
          .withArgs(edge.address, 3n, slot);
      }
      const otherSlot = statementSlot("bill", ethers.zeroPadValue(f.recipient.address, 32));
      const o = await conflictingStatements(domain, edgeSigner, 3n, otherSlot);
      await expect(
        slashing
          .connect(challenger)
          .reportEquivocation(edge.address, o.first, o.firstSignature, o.second, o.secondSignature),
      ).to.emit(slashing, "EquivocationSlashed");
    });

    it("slashes a watchdog's conflicting statements too: every role signs statements", async () => {
      const f = await loadFixture(slashingFixture);
      const { registry, watchdogs } = f;
      await jail(f, watchdogs[1]);
      expect(await registry.stakeOf(watchdogs[1].address, watchdogs[1].address)).to.equal(900n * TOKEN);
      expect(await registry.isActive(watchdogs[1].address)).to.equal(false);
    });

    it("does not count two statements with the same content as equivocation", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, edgeSigner, outsider, domain } = f;
      const statement = { epoch: 1n, slot: statementSlot("bill", ethers.id("r")), content: ethers.id("only bill") };
      const signature = await signStatement(edgeSigner, domain, statement);
      await expect(
        slashing.connect(outsider).reportEquivocation(edge.address, statement, signature, statement, signature),
      )
        .to.be.revertedWithCustomError(slashing, "SlashingSameContent")
        .withArgs(statement.content);
    });

    it("does not count statements for different slots or epochs as conflicting", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, edgeSigner, outsider, domain } = f;
      const slot = statementSlot("bill", ethers.id("r"));
      const other = statementSlot("inboxHead", ethers.id("r"));
      const a = { epoch: 1n, slot, content: ethers.id("a") };
      const b = { epoch: 2n, slot, content: ethers.id("b") };
      const c = { epoch: 1n, slot: other, content: ethers.id("c") };
      const [sa, sb, sc] = await Promise.all([a, b, c].map((s) => signStatement(edgeSigner, domain, s)));
      await expect(slashing.connect(outsider).reportEquivocation(edge.address, a, sa, b, sb))
        .to.be.revertedWithCustomError(slashing, "SlashingStatementsNotConflicting")
        .withArgs(1n, slot, 2n, slot);
      await expect(slashing.connect(outsider).reportEquivocation(edge.address, a, sa, c, sc))
        .to.be.revertedWithCustomError(slashing, "SlashingStatementsNotConflicting")
        .withArgs(1n, slot, 1n, other);
    });

    it("refuses statements not both signed by the node's signer", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, edgeSigner, outsider, domain } = f;
      const slot = statementSlot("bill", ethers.id("r"));
      const s = await conflictingStatements(domain, edgeSigner, 1n, slot);
      const forged = await signStatement(outsider, domain, s.second);
      await expect(
        slashing.connect(outsider).reportEquivocation(edge.address, s.first, s.firstSignature, s.second, forged),
      )
        .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
        .withArgs(edgeSigner.address);
      await expect(
        slashing.connect(outsider).reportEquivocation(edge.address, s.second, forged, s.first, s.firstSignature),
      )
        .to.be.revertedWithCustomError(slashing, "SlashingInvalidSignature")
        .withArgs(edgeSigner.address);
    });

    it("refuses a node that is not registered", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, outsider, domain } = f;
      const s = await conflictingStatements(domain, outsider, 1n, ethers.ZeroHash);
      await expect(
        slashing
          .connect(outsider)
          .reportEquivocation(outsider.address, s.first, s.firstSignature, s.second, s.secondSignature),
      )
        .to.be.revertedWithCustomError(slashing, "SlashingNotRegistered")
        .withArgs(outsider.address);
    });
  });

  describe("flag and vote", () => {
    it("flags an edge node, takes the stake and draws distinct reviewers among the other active watchdogs", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, watchdogs } = f;
      await setParameter(f, "ReviewerCount", 3n);
      const flagger = watchdogs[0];
      const evidence = ethers.id("probe log");
      const tx = slashing.connect(flagger).flag(edge.address, evidence);
      const { receipt, timestamp, prevRandao } = await mined(tx);
      const reviewers = slashingEvent(slashing, receipt, "NodeFlagged").args.reviewers as string[];
      await expect(tx)
        .to.emit(slashing, "NodeFlagged")
        .withArgs(1n, edge.address, flagger.address, evidence, FLAG_STAKE, timestamp + REVIEW_WINDOW, reviewers);
      await expect(tx).to.changeTokenBalances(token, [flagger, slashing], [-FLAG_STAKE, FLAG_STAKE]);
      expect(reviewers).to.have.length(3);
      expect(new Set(reviewers).size).to.equal(3);
      expect(reviewers).to.not.include(flagger.address);
      for (const r of reviewers) expect(watchdogs.map((w) => w.address)).to.include(r);
      expect(reviewers).to.deep.equal(await modelDraw(f, 1n, flagger.address, prevRandao, 3n, receipt.blockNumber));

      const view = await slashing.flagOf(1n);
      expect([
        view.node,
        view.flagger,
        view.stake,
        view.deadline,
        view.status,
        [...view.reviewers],
        view.slashVotes,
        view.keepVotes,
      ]).to.deep.equal([
        edge.address,
        flagger.address,
        FLAG_STAKE,
        timestamp + REVIEW_WINDOW,
        BigInt(FlagStatus.Open),
        reviewers,
        0n,
        0n,
      ]);
      expect(await slashing.flagCount()).to.equal(1n);
      expect(await slashing.protectedUntil(edge.address)).to.equal(timestamp + PROTECTION);
      for (const r of reviewers) expect(await slashing.ballotOf(1n, r)).to.equal(Ballot.Pending);
      expect(await slashing.ballotOf(1n, flagger.address)).to.equal(Ballot.NotReviewer);
    });

    it("draws every other active watchdog when fewer are available than ReviewerCount, skipping jailed ones", async () => {
      const f = await loadFixture(slashingFixture);
      const { watchdogs } = f;
      await setParameter(f, "ReviewerCount", 21n);
      await jail(f, watchdogs[4]);
      const { flagId, reviewers, prevRandao } = await raiseFlag(f);
      const addresses = reviewers.map((r) => r.address);
      expect([...addresses].sort()).to.deep.equal(
        watchdogs
          .slice(1, 4)
          .map((w) => w.address)
          .sort(),
      );
      const block = await ethers.provider.getBlockNumber();
      expect(addresses).to.deep.equal(await modelDraw(f, flagId, watchdogs[0].address, prevRandao, 21n, block));
    });

    it("refuses a flag when no other active watchdog can review it", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, registry, edge, watchdogs } = f;
      for (const w of watchdogs.slice(1, 4)) await (await registry.connect(w).unbond(w.address, WATCHDOG_STAKE)).wait();
      await jail(f, watchdogs[4]);
      // Two watchdogs still hold stake: the flagger and the jailed one.
      await expect(slashing.connect(watchdogs[0]).flag(edge.address, ethers.ZeroHash))
        .to.be.revertedWithCustomError(slashing, "SlashingNoReviewers")
        .withArgs(watchdogs[0].address, 2n);
    });

    it("upholds a flag with more slash than keep votes: slashes, jails and pays flagger and slash voters", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, registry, token, edge, delegator, outsider, watchdogs, treasury } = f;
      await setParameter(f, "ReviewerCount", 3n);
      const { flagId, reviewers, deadline } = await raiseFlag(f);
      const [a, b, c] = reviewers;
      await expect(slashing.connect(a).vote(flagId, true))
        .to.emit(slashing, "ReviewerVoted")
        .withArgs(flagId, a.address, true);
      await expect(slashing.connect(b).vote(flagId, true))
        .to.emit(slashing, "ReviewerVoted")
        .withArgs(flagId, b.address, true);
      await expect(slashing.connect(c).vote(flagId, false))
        .to.emit(slashing, "ReviewerVoted")
        .withArgs(flagId, c.address, false);
      expect(await slashing.ballotOf(flagId, a.address)).to.equal(Ballot.Slash);
      expect(await slashing.ballotOf(flagId, c.address)).to.equal(Ballot.Keep);
      await time.increaseTo(deadline);

      const cut = edgeSlash(SLASH_VOTED);
      expect(cut.total).to.equal(1_600n * TOKEN);
      const flaggerReward = (cut.total * FLAGGER_REWARD) / BPS;
      const each = (cut.total * REVIEWER_REWARD) / BPS / 2n;
      const toTreasury = cut.total - flaggerReward - 2n * each;
      const tx = slashing.connect(outsider).resolveFlag(flagId);
      const { timestamp } = await mined(tx);
      await expect(tx)
        .to.emit(slashing, "FlagUpheld")
        .withArgs(flagId, edge.address, 2n, 1n, cut.total, flaggerReward, each, toTreasury);
      await expect(tx)
        .to.emit(registry, "NodeSlashed")
        .withArgs(edge.address, SLASH_VOTED, cut.bonded, cut.unbonding, timestamp + JAIL);
      await expect(tx).to.changeTokenBalances(
        token,
        [watchdogs[0], a, b, c, treasury, registry, slashing],
        [FLAG_STAKE + flaggerReward, each, each, 0, toTreasury, -cut.total, -FLAG_STAKE],
      );
      expect(await registry.stakeOf(edge.address, delegator.address)).to.equal(3_600n * TOKEN);
      expect(await registry.isActive(edge.address)).to.equal(false);
      const view = await slashing.flagOf(flagId);
      expect([view.status, view.slashVotes, view.keepVotes]).to.deep.equal([BigInt(FlagStatus.Upheld), 2n, 1n]);
      await expect(slashing.connect(outsider).resolveFlag(flagId))
        .to.be.revertedWithCustomError(slashing, "SlashingFlagNotOpen")
        .withArgs(flagId, FlagStatus.Upheld);
    });

    it("pays reviewers who do not vote nothing, and splits the reviewers' share with the dust to the treasury", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, outsider, watchdogs, treasury } = f;
      await setParameter(f, "ReviewerCount", 4n);
      const { flagId, reviewers, deadline } = await raiseFlag(f);
      const [a, b, c, idle] = reviewers;
      for (const r of [a, b, c]) await (await slashing.connect(r).vote(flagId, true)).wait();
      await time.increaseTo(deadline);
      const slashed = edgeSlash(SLASH_VOTED).total;
      const flaggerReward = (slashed * FLAGGER_REWARD) / BPS;
      const each = (slashed * REVIEWER_REWARD) / BPS / 3n; // 160 SEND / 3: not whole
      expect(each * 3n).to.not.equal((slashed * REVIEWER_REWARD) / BPS);
      const toTreasury = slashed - flaggerReward - 3n * each;
      const tx = slashing.connect(outsider).resolveFlag(flagId);
      await expect(tx)
        .to.emit(slashing, "FlagUpheld")
        .withArgs(flagId, f.edge.address, 3n, 0n, slashed, flaggerReward, each, toTreasury);
      await expect(tx).to.changeTokenBalances(
        token,
        [watchdogs[0], a, b, c, idle, treasury, slashing],
        [FLAG_STAKE + flaggerReward, each, each, each, 0, toTreasury, -FLAG_STAKE],
      );
      expect(await slashing.ballotOf(flagId, idle.address)).to.equal(Ballot.Pending);
    });

    it("rejects a flag with more keep votes: the keep voters share ReviewerRewardBps of the stake, the treasury the rest", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, registry, token, edge, outsider, watchdogs, treasury } = f;
      await setParameter(f, "ReviewerCount", 3n);
      const { flagId, reviewers, deadline } = await raiseFlag(f);
      const [a, b, c] = reviewers;
      await (await slashing.connect(a).vote(flagId, true)).wait();
      await (await slashing.connect(b).vote(flagId, false)).wait();
      await (await slashing.connect(c).vote(flagId, false)).wait();
      await time.increaseTo(deadline);
      const each = (FLAG_STAKE * REVIEWER_REWARD) / BPS / 2n;
      const tx = slashing.connect(outsider).resolveFlag(flagId);
      await expect(tx)
        .to.emit(slashing, "FlagRejected")
        .withArgs(flagId, edge.address, 1n, 2n, 2n, each, FLAG_STAKE - 2n * each);
      await expect(tx).not.to.emit(registry, "NodeSlashed");
      await expect(tx).to.changeTokenBalances(
        token,
        [watchdogs[0], a, b, c, treasury, registry, slashing],
        [0, 0, each, each, FLAG_STAKE - 2n * each, 0, -FLAG_STAKE],
      );
      expect(await registry.isActive(edge.address)).to.equal(true);
      expect((await slashing.flagOf(flagId)).status).to.equal(FlagStatus.Rejected);
    });

    it("rejects a tied flag and pays everyone who voted, and no one who did not", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, outsider, treasury } = f;
      await setParameter(f, "ReviewerCount", 3n);
      const { flagId, reviewers, deadline } = await raiseFlag(f);
      const [a, b, idle] = reviewers;
      await (await slashing.connect(a).vote(flagId, true)).wait();
      await (await slashing.connect(b).vote(flagId, false)).wait();
      await time.increaseTo(deadline);
      const each = (FLAG_STAKE * REVIEWER_REWARD) / BPS / 2n;
      const tx = slashing.connect(outsider).resolveFlag(flagId);
      await expect(tx)
        .to.emit(slashing, "FlagRejected")
        .withArgs(flagId, edge.address, 1n, 1n, 2n, each, FLAG_STAKE - 2n * each);
      await expect(tx).to.changeTokenBalances(token, [a, b, idle, treasury], [each, each, 0, FLAG_STAKE - 2n * each]);
    });

    it("sends the whole stake of a flag nobody voted on to the treasury", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, token, edge, outsider, treasury, watchdogs } = f;
      const { flagId, reviewers, deadline } = await raiseFlag(f);
      expect(reviewers).to.have.length(1);
      await time.increaseTo(deadline);
      const tx = slashing.connect(outsider).resolveFlag(flagId);
      await expect(tx).to.emit(slashing, "FlagRejected").withArgs(flagId, edge.address, 0n, 0n, 0n, 0n, FLAG_STAKE);
      await expect(tx).to.changeTokenBalances(token, [watchdogs[0], reviewers[0], treasury], [0, 0, FLAG_STAKE]);
    });

    it("resolves before the window closes once every reviewer has voted, and not before", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, outsider } = f;
      await setParameter(f, "ReviewerCount", 2n);
      const { flagId, reviewers, deadline } = await raiseFlag(f);
      await (await slashing.connect(reviewers[0]).vote(flagId, true)).wait();
      await expect(slashing.connect(outsider).resolveFlag(flagId))
        .to.be.revertedWithCustomError(slashing, "SlashingReviewWindowOpen")
        .withArgs(flagId, deadline);
      await (await slashing.connect(reviewers[1]).vote(flagId, true)).wait();
      expect(await now()).to.be.lessThan(deadline);
      await expect(slashing.connect(outsider).resolveFlag(flagId)).to.emit(slashing, "FlagUpheld");
    });

    it("protects a flagged node from new flags for FlagProtectionPeriod, and for the whole vote if that is longer", async () => {
      const f = await loadFixture(slashingFixture);
      const { slashing, edge, edge2, watchdogs } = f;
      const first = await raiseFlag(f);
      const until = first.deadline - REVIEW_WINDOW + PROTECTION;
      expect(await slashing.protectedUntil(edge.address)).to.equal(until);
      await time.setNextBlockTimestamp(until - 1n);
      await expect(slashing.connect(watchdogs[1]).flag(edge.address, ethers.ZeroHash))
        .to.be.revertedWithCustomError(slashing, "SlashingNodeProtected")
        .withArgs(edge.address, until);
      await time.setNextBlockTimestamp(until);
      await expect(slashing.connect(watchdogs[1]).flag(edge.address, ethers.ZeroHash)).to.emit(slashing, "NodeFlagged");

      await setParameter(f, "ReviewWindow", 2n * PROTECTION);
      const other = await raiseFlag(f, watchdogs[2], edge2.address);
      expect(await slashing.protectedUntil(edge2.address)).to.equal(other.deadline - REVIEW_WINDOW + 2n * PROTECTION);
    });

    describe("reverts", () => {
      it("refuses flags from anyone but an active watchdog", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, edge, edge2, outsider, watchdogs } = f;
        await jail(f, watchdogs[1]);
        for (const caller of [outsider, edge2, watchdogs[1]]) {
          await expect(slashing.connect(caller).flag(edge.address, ethers.ZeroHash))
            .to.be.revertedWithCustomError(slashing, "SlashingNotActiveWatchdog")
            .withArgs(caller.address);
        }
      });

      it("refuses to flag anything but an edge node", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, outsider, watchdogs } = f;
        await expect(slashing.connect(watchdogs[0]).flag(watchdogs[1].address, ethers.ZeroHash))
          .to.be.revertedWithCustomError(slashing, "SlashingWrongRole")
          .withArgs(watchdogs[1].address, NodeRole.Watchdog, NodeRole.Edge);
        await expect(slashing.connect(watchdogs[0]).flag(outsider.address, ethers.ZeroHash))
          .to.be.revertedWithCustomError(slashing, "SlashingWrongRole")
          .withArgs(outsider.address, NodeRole.None, NodeRole.Edge);
      });

      it("refuses a flagger that has not approved the stake", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, token, edge, watchdogs } = f;
        await (await token.connect(watchdogs[0]).approve(await slashing.getAddress(), 0)).wait();
        await expect(slashing.connect(watchdogs[0]).flag(edge.address, ethers.ZeroHash))
          .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
          .withArgs(await slashing.getAddress(), 0, FLAG_STAKE);
      });

      it("refuses votes from anyone not drawn, twice, late, or on a flag that is unknown or resolved", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, outsider, watchdogs } = f;
        await setParameter(f, "ReviewerCount", 2n);
        const { flagId, reviewers, deadline } = await raiseFlag(f);
        const notDrawn = watchdogs.slice(1).find((w) => !reviewers.some((r) => r.address === w.address))!;
        for (const caller of [outsider, watchdogs[0], notDrawn]) {
          await expect(slashing.connect(caller).vote(flagId, true))
            .to.be.revertedWithCustomError(slashing, "SlashingNotReviewer")
            .withArgs(flagId, caller.address);
        }
        await (await slashing.connect(reviewers[0]).vote(flagId, false)).wait();
        await expect(slashing.connect(reviewers[0]).vote(flagId, true))
          .to.be.revertedWithCustomError(slashing, "SlashingAlreadyVoted")
          .withArgs(flagId, reviewers[0].address);
        await time.setNextBlockTimestamp(deadline);
        await expect(slashing.connect(reviewers[1]).vote(flagId, true))
          .to.be.revertedWithCustomError(slashing, "SlashingReviewWindowClosed")
          .withArgs(flagId, deadline);
        await expect(slashing.connect(reviewers[1]).vote(flagId + 1n, true))
          .to.be.revertedWithCustomError(slashing, "SlashingUnknownFlag")
          .withArgs(flagId + 1n);
        await (await slashing.connect(outsider).resolveFlag(flagId)).wait();
        await expect(slashing.connect(reviewers[1]).vote(flagId, true))
          .to.be.revertedWithCustomError(slashing, "SlashingFlagNotOpen")
          .withArgs(flagId, FlagStatus.Rejected);
      });

      it("refuses to resolve a flag that is unknown, still open to votes, or resolved", async () => {
        const f = await loadFixture(slashingFixture);
        const { slashing, outsider } = f;
        await expect(slashing.connect(outsider).resolveFlag(0n))
          .to.be.revertedWithCustomError(slashing, "SlashingUnknownFlag")
          .withArgs(0n);
        const { flagId, deadline } = await raiseFlag(f);
        await time.setNextBlockTimestamp(deadline - 1n);
        await expect(slashing.connect(outsider).resolveFlag(flagId))
          .to.be.revertedWithCustomError(slashing, "SlashingReviewWindowOpen")
          .withArgs(flagId, deadline);
        await time.setNextBlockTimestamp(deadline);
        await expect(slashing.connect(outsider).resolveFlag(flagId)).to.emit(slashing, "FlagRejected");
        await expect(slashing.connect(outsider).resolveFlag(flagId))
          .to.be.revertedWithCustomError(slashing, "SlashingFlagNotOpen")
          .withArgs(flagId, FlagStatus.Rejected);
      });
    });
  });
});
