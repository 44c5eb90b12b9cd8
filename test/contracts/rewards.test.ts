import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { moveTo, registerNode, rewardsDoubleFixture, rewardsEndToEndFixture, setParameter } from "../fixtures/rewards";
import {
  commissionOf,
  edgeReward,
  guardianReward,
  median,
  SCALE,
  watchdogReward,
  type EpochTerms,
} from "../lib/rewardsModel";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";

/** Local emission and split (LOCAL_PARAMETERS keep the contract defaults). */
const TERMS: EpochTerms = { emission: 100_000n * TOKEN, edgeBps: 7_000n, watchdogBps: 1_500n, guardianBps: 1_500n };

type DoubleFixture = Awaited<ReturnType<typeof rewardsDoubleFixture>>;

/** When `epoch` is final (the settlement deadline), and when its watchdog credits are (one settlement window later). */
async function deadlines(f: DoubleFixture, epoch: bigint): Promise<{ finalAt: bigint; creditsAt: bigint }> {
  const finalAt = await f.double.settlementDeadline(epoch);
  return { finalAt, creditsAt: finalAt + 300n };
}

/** Bonded shares of every staker of `node`, from the registry, as the claim found them. */
async function totalShares(f: { registry: DoubleFixture["registry"] }, node: string): Promise<bigint> {
  return (await f.registry.sharesOf(node, node))[1];
}

/** The gas a transaction used. */
async function gasOf(tx: Promise<{ wait(): Promise<{ gasUsed: bigint } | null> }>): Promise<bigint> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("gasOf: expected a receipt");
  return receipt.gasUsed;
}

describe("RewardDistributor", () => {
  describe("deploy", () => {
    it("is the reward pool's distributor and the registry's stake hook, pays from epoch 0, and leaves no role to the deployer", async () => {
      const { distributor, rewardPool, registry, timelock, deployer, qualityOracle, deployment } =
        await loadFixture(deployProtocolFixture);
      const address = await distributor.getAddress();
      expect(await rewardPool.distributor()).to.equal(address);
      expect(await registry.stakeHook()).to.equal(address);
      expect(await distributor.firstEpoch()).to.equal(0n);
      expect(await distributor.fixedUntil()).to.equal(0n);
      expect(await distributor.MAX_CLAIM_EPOCHS()).to.equal(64n);
      expect(await distributor.REWARD_PER_SHARE_SCALE()).to.equal(SCALE);
      expect(await rewardPool.owner()).to.equal(await timelock.getAddress());
      expect(await registry.owner()).to.equal(await timelock.getAddress());
      expect(deployment.contracts.RewardDistributor).to.equal(address);
      expect(deployment.contracts.QualityOracle).to.equal(await qualityOracle.getAddress());
      await expect(rewardPool.connect(deployer).setDistributor(deployer.address)).to.be.revertedWithCustomError(
        rewardPool,
        "OwnableUnauthorizedAccount",
      );
      await expect(registry.connect(deployer).setStakeHook(deployer.address)).to.be.revertedWithCustomError(
        registry,
        "OwnableUnauthorizedAccount",
      );
    });
  });

  describe("end to end, with work settled by real proofs", () => {
    it("pays edge nodes by work x quality, the guardian by settled work and watchdogs by credits, to the wei", async () => {
      const f = await loadFixture(rewardsEndToEndFixture);
      const {
        distributor,
        qualityOracle,
        rewardPool,
        token,
        edgeA,
        edgeB,
        guardian,
        watchdog1,
        watchdog2,
        delegator,
        e0,
      } = f;
      // E0: A 1,040 work scored 9,000 and 8,000 (median 8,500, both in the band); B 7 work scored 7,000 and 2,000
      // (median 4,500, neither within 1,000 of it). The guardian settled all 1,047.
      const a = edgeReward(TERMS, 1_040n, 1_047n, BigInt(median([9_000, 8_000])));
      const b = edgeReward(TERMS, 7n, 1_047n, 4_500n);
      const g = guardianReward(TERMS, 1_047n, 1_047n);
      const w = watchdogReward(TERMS, 1n, 2n);
      for (const node of [edgeA, edgeB]) expect(await qualityOracle.isFinalized(node.address, e0)).to.equal(true);
      expect((await qualityOracle.creditsOf(watchdog1.address, e0)).slice(0, 2)).to.deep.equal([1n, 2n]);

      const sharesA = await totalShares(f, edgeA.address);
      expect(sharesA).to.equal(4_000n * TOKEN); // 1,000 own, 3,000 delegated
      await expect(distributor.claim(edgeA.address, e0))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edgeA.address, e0, e0, a, 0, (a * SCALE) / sharesA);
      await expect(distributor.claim(edgeB.address, e0))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edgeB.address, e0, e0, b, 0, (b * SCALE) / (1_000n * TOKEN));
      await expect(distributor.claim(guardian.address, e0))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(guardian.address, e0, e0, g, 0, (g * SCALE) / (2_000n * TOKEN));
      // Watchdog credits are final one settlement window after the epoch: by now (the end of E1) they are.
      const w1Commission = commissionOf(w, 1_000n);
      await expect(distributor.claim(watchdog1.address, e0))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(watchdog1.address, e0, e0, w, w1Commission, ((w - w1Commission) * SCALE) / (3_000n * TOKEN));
      await (await distributor.claim(watchdog2.address, e0)).wait();

      const perShareA = (a * SCALE) / sharesA;
      const ownA = (1_000n * TOKEN * perShareA) / SCALE;
      const delegated = (3_000n * TOKEN * perShareA) / SCALE;
      await expect(distributor.connect(delegator).withdrawRewards(edgeA.address)).to.changeTokenBalances(
        token,
        [rewardPool, delegator],
        [-delegated, delegated],
      );
      await expect(distributor.connect(edgeA).withdrawRewards(edgeA.address))
        .to.emit(distributor, "RewardsWithdrawn")
        .withArgs(edgeA.address, edgeA.address, ownA);
      expect(ownA + delegated).to.be.at.most(a);
      await expect(distributor.connect(guardian).withdrawRewards(guardian.address)).to.changeTokenBalance(
        token,
        guardian,
        g,
      );
      // The watchdog operator is its node's only staker: its commission plus all of the rest, less per-share dust.
      const w1Rest = (3_000n * TOKEN * (((w - w1Commission) * SCALE) / (3_000n * TOKEN))) / SCALE;
      await expect(distributor.connect(watchdog1).withdrawRewards(watchdog1.address)).to.changeTokenBalance(
        token,
        watchdog1,
        w1Commission + w1Rest,
      );
      // Everything paid for E0 stays within its emission.
      expect(a + b + g + 2n * w).to.be.at.most(TERMS.emission);
    });

    it("claims several epochs in one call, each with its own work, quality and commission", async () => {
      const f = await loadFixture(rewardsEndToEndFixture);
      const { distributor, rollup, edgeA, edgeB, e0, e1 } = f;
      expect(await rollup.workOf(edgeA.address, e1)).to.equal(400n);
      expect(await rollup.workOf(edgeB.address, e1)).to.equal(50n);
      await expect(distributor.claim(edgeA.address, e1))
        .to.be.revertedWithCustomError(distributor, "RewardsEpochNotFinal")
        .withArgs(e1, await rollup.settlementDeadline(e1));
      await moveTo(await rollup.settlementDeadline(e1));
      // E0: quality 8,500, no commission. E1: one score of 6,000 (the local quorum is 1), commission 10%.
      const r0 = edgeReward(TERMS, 1_040n, 1_047n, 8_500n);
      const r1 = edgeReward(TERMS, 400n, 450n, 6_000n);
      const commission = commissionOf(r1, 1_000n);
      await expect(distributor.claim(edgeA.address, e1))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edgeA.address, e0, e1, r0 + r1, commission, ((r0 + r1 - commission) * SCALE) / (4_000n * TOKEN));
      // B was not scored in E1: the default quality, finalized lazily by the claim.
      const b1 = edgeReward(TERMS, 50n, 450n, 5_000n);
      const b0 = edgeReward(TERMS, 7n, 1_047n, 4_500n);
      await expect(distributor.claim(edgeB.address, e1))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edgeB.address, e0, e1, b0 + b1, 0, ((b0 + b1) * SCALE) / (1_000n * TOKEN));
      expect(await distributor.rewardOf(edgeA.address, e1)).to.equal(r1);
      expect(await distributor.nextEpochOf(edgeA.address)).to.equal(e1 + 1n);
    });
  });

  describe("claim", () => {
    it("refuses an address that is not a registered node", async () => {
      const { distributor, outsider, epoch } = await loadFixture(rewardsDoubleFixture);
      await expect(distributor.claim(outsider.address, epoch))
        .to.be.revertedWithCustomError(distributor, "RewardsNodeNotRegistered")
        .withArgs(outsider.address);
    });

    it("refuses an epoch before its settlement deadline and accepts it at the deadline", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, edges, guardians, epoch } = f;
      await (await double.settle(epoch, edges[0].address, 10n, guardians[0].address)).wait();
      const { finalAt } = await deadlines(f, epoch);
      await time.setNextBlockTimestamp(finalAt - 1n);
      await expect(distributor.claim(edges[0].address, epoch))
        .to.be.revertedWithCustomError(distributor, "RewardsEpochNotFinal")
        .withArgs(epoch, finalAt);
      await time.setNextBlockTimestamp(finalAt);
      await expect(distributor.claim(edges[0].address, epoch)).to.emit(distributor, "RewardsClaimed");
    });

    it("processes each epoch once: claiming again is refused, the next epochs continue where it stopped", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, edges, epoch } = f;
      for (const e of [epoch, epoch + 1n, epoch + 2n])
        await (await double.settle(e, edges[0].address, 5n, ethers.ZeroAddress)).wait();
      await moveTo((await deadlines(f, epoch + 2n)).finalAt);
      await (await distributor.claim(edges[0].address, epoch)).wait();
      await expect(distributor.claim(edges[0].address, epoch))
        .to.be.revertedWithCustomError(distributor, "RewardsAlreadyClaimed")
        .withArgs(edges[0].address, epoch + 1n, epoch);
      const r = edgeReward(TERMS, 5n, 5n, 5_000n);
      const shares = 3_000n * TOKEN;
      await expect(distributor.claim(edges[0].address, epoch + 2n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(
          edges[0].address,
          epoch + 1n,
          epoch + 2n,
          2n * r,
          0,
          (r * SCALE) / shares + (2n * r * SCALE) / shares,
        );
    });

    it("refuses more than 64 epochs in one call and takes exactly 64", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, edges, epoch } = f;
      await moveTo((await deadlines(f, epoch + 64n)).finalAt);
      await expect(distributor.claim(edges[0].address, epoch + 64n))
        .to.be.revertedWithCustomError(distributor, "RewardsTooManyEpochs")
        .withArgs(65, 64);
      await expect(distributor.claim(edges[0].address, epoch + 63n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edges[0].address, epoch, epoch + 63n, 0, 0, 0);
      expect(await distributor.nextEpochOf(edges[0].address)).to.equal(epoch + 64n);
    });

    it("starts a node at the epoch it registered in", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, registry, parameters, outsider, epoch } = f;
      await moveTo(await parameters.epochStart(epoch + 3n));
      await registerNode(registry, outsider, NodeRole.Edge);
      expect(await registry.registeredIn(outsider.address)).to.equal(epoch + 3n);
      expect(await distributor.nextEpochOf(outsider.address)).to.equal(epoch + 3n);
      await expect(distributor.claim(outsider.address, epoch + 2n))
        .to.be.revertedWithCustomError(distributor, "RewardsAlreadyClaimed")
        .withArgs(outsider.address, epoch + 3n, epoch + 2n);
    });

    it("pays a watchdog only once its epoch's credits are final (one settlement window after the deadline)", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, oracle, edges, watchdogs, epoch } = f;
      await (await oracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address], [8_000])).wait();
      const { finalAt, creditsAt } = await deadlines(f, epoch);
      await moveTo(finalAt);
      await (await oracle.finalize(epoch, edges[0].address)).wait();
      await expect(distributor.claim(watchdogs[0].address, epoch))
        .to.be.revertedWithCustomError(distributor, "RewardsCreditsNotFinal")
        .withArgs(epoch, creditsAt);
      // A finalization just before the credit deadline still counts.
      await time.setNextBlockTimestamp(creditsAt - 1n);
      await (await oracle.connect(watchdogs[1]).finalize(epoch, edges[1].address)).wait();
      await time.setNextBlockTimestamp(creditsAt);
      const w = watchdogReward(TERMS, 1n, 1n);
      await expect(distributor.claim(watchdogs[0].address, epoch))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(
          watchdogs[0].address,
          epoch,
          epoch,
          w,
          commissionOf(w, 1_000n),
          ((w - commissionOf(w, 1_000n)) * SCALE) / (3_000n * TOKEN),
        );
    });

    it("pays a watchdog nothing for an epoch nobody scored, without waiting for a credit deadline", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, watchdogs, epoch } = f;
      await moveTo((await deadlines(f, epoch)).finalAt);
      await expect(distributor.claim(watchdogs[0].address, epoch))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(watchdogs[0].address, epoch, epoch, 0, 0, 0);
    });

    it("finalizes an unfinalized edge node's quality itself, crediting watchdogs only before the credit deadline", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, oracle, double, edges, watchdogs, epoch } = f;
      await (await double.settle(epoch, edges[0].address, 10n, ethers.ZeroAddress)).wait();
      await (await double.settle(epoch, edges[1].address, 30n, ethers.ZeroAddress)).wait();
      await (
        await oracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address, edges[1].address], [9_000, 6_000])
      ).wait();
      const { finalAt, creditsAt } = await deadlines(f, epoch);
      await moveTo(finalAt);
      await expect(distributor.claim(edges[0].address, epoch))
        .to.emit(oracle, "QualityFinalized")
        .withArgs(epoch, edges[0].address, 9_000, 1, 1);
      await moveTo(creditsAt);
      await expect(distributor.claim(edges[1].address, epoch))
        .to.emit(oracle, "QualityFinalized")
        .withArgs(epoch, edges[1].address, 6_000, 1, 0);
      expect(await distributor.rewardOf(edges[1].address, epoch)).to.equal(edgeReward(TERMS, 30n, 40n, 6_000n));
    });

    it("fixes an epoch's emission and split at the first claim that reaches it; later changes apply to later epochs", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, parameters, governance, edges, guardians, epoch } = f;
      for (const e of [epoch, epoch + 1n]) {
        await (await double.settle(e, edges[0].address, 10n, guardians[0].address)).wait();
        await (await double.settle(e, edges[1].address, 30n, guardians[1].address)).wait();
      }
      await moveTo((await deadlines(f, epoch)).finalAt);
      expect(await distributor.termsOf(epoch)).to.deep.equal([TERMS.emission, 7_000n, 1_500n, 1_500n, 2_000n, false]);
      await expect(distributor.claim(edges[0].address, epoch))
        .to.emit(distributor, "EpochTermsFixed")
        .withArgs(epoch, epoch, TERMS.emission, 7_000, 1_500, 1_500, 2_000);
      expect(await distributor.termsOf(epoch)).to.deep.equal([TERMS.emission, 7_000n, 1_500n, 1_500n, 2_000n, true]);
      expect(await distributor.fixedUntil()).to.equal(epoch + 1n);

      // Governance halves the emission and moves the split: epoch E keeps its terms, E + 1 takes the new ones.
      await setParameter(parameters, governance, "EmissionPerEpoch", 50_000n * TOKEN);
      await (await parameters.connect(governance).setRewardSplit(6_000, 2_000, 2_000)).wait();
      await moveTo((await deadlines(f, epoch + 1n)).finalAt);
      const newTerms: EpochTerms = {
        emission: 50_000n * TOKEN,
        edgeBps: 6_000n,
        watchdogBps: 2_000n,
        guardianBps: 2_000n,
      };
      await expect(distributor.claim(edges[0].address, epoch + 1n))
        .to.emit(distributor, "EpochTermsFixed")
        .withArgs(epoch + 1n, epoch + 1n, newTerms.emission, 6_000, 2_000, 2_000, 2_000);
      // A node that claims both epochs now is paid each at its own terms (the older from the history).
      const r0 = edgeReward(TERMS, 30n, 40n, 5_000n);
      const r1 = edgeReward(newTerms, 30n, 40n, 5_000n);
      const commission = commissionOf(r0, 500n) + commissionOf(r1, 500n);
      await expect(distributor.claim(edges[1].address, epoch + 1n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(
          edges[1].address,
          epoch,
          epoch + 1n,
          r0 + r1,
          commission,
          ((r0 + r1 - commission) * SCALE) / (3_000n * TOKEN),
        )
        .and.not.to.emit(distributor, "EpochTermsFixed");
      const g0 = guardianReward(TERMS, 10n, 40n);
      const g1 = guardianReward(newTerms, 10n, 40n);
      expect(await distributor.rewardOf(guardians[0].address, epoch)).to.equal(g0);
      expect(await distributor.rewardOf(guardians[0].address, epoch + 1n)).to.equal(g1);
      await expect(distributor.claim(guardians[0].address, epoch + 1n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(
          guardians[0].address,
          epoch,
          epoch + 1n,
          g0 + g1,
          commissionOf(g0, 300n) + commissionOf(g1, 300n),
          ((g0 + g1 - commissionOf(g0, 300n) - commissionOf(g1, 300n)) * SCALE) / (3_000n * TOKEN),
        );
    });

    it("replaces terms that cover no fixed epoch yet rather than keeping them", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, parameters, governance, edges, epoch } = f;
      // Before any claim the newest terms cover nothing: a change replaces them, and epoch E is fixed at the new ones.
      await setParameter(parameters, governance, "EmissionPerEpoch", 7n * TOKEN);
      await moveTo((await deadlines(f, epoch)).finalAt);
      await (await distributor.claim(edges[0].address, epoch)).wait();
      expect(await distributor.termsOf(epoch)).to.deep.equal([7n * TOKEN, 7_000n, 1_500n, 1_500n, 2_000n, true]);
    });

    it("pays a jailed node nothing for the epochs it was jailed in, and pays it again afterwards", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, registry, double, parameters, edges, guardians, slasher, epoch } = f;
      for (let i = 0n; i < 4n; i++) {
        await (await double.settle(epoch + i, edges[0].address, 10n, guardians[0].address)).wait();
        await (await double.settle(epoch + i, edges[1].address, 10n, guardians[1].address)).wait();
      }
      // Jailed 600 s from the middle of E + 1: epochs E + 1 and E + 2 (the edge node and a guardian).
      await moveTo((await parameters.epochStart(epoch + 1n)) + 300n);
      await (await registry.connect(slasher).slash(edges[0].address, 100, true)).wait();
      await (await registry.connect(slasher).slash(guardians[0].address, 100, true)).wait();
      expect(await registry.wasJailedIn(edges[0].address, epoch + 1n)).to.equal(true);
      expect(await registry.wasJailedIn(edges[0].address, epoch + 2n)).to.equal(true);
      expect(await registry.wasJailedIn(edges[0].address, epoch + 3n)).to.equal(false);
      await moveTo((await deadlines(f, epoch + 3n)).finalAt);
      const r = edgeReward(TERMS, 10n, 20n, 5_000n);
      const shares = await totalShares(f, edges[0].address);
      await expect(distributor.claim(edges[0].address, epoch + 3n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edges[0].address, epoch, epoch + 3n, 2n * r, 0, (2n * r * SCALE) / shares);
      expect(await distributor.rewardOf(edges[0].address, epoch + 1n)).to.equal(0n);
      const g = guardianReward(TERMS, 10n, 20n);
      await expect(distributor.claim(guardians[0].address, epoch + 3n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(guardians[0].address, epoch, epoch + 3n, 2n * g, 2n * commissionOf(g, 300n), anyPerShare());
      // The unjailed peer is paid for all four.
      await expect(distributor.claim(edges[1].address, epoch + 3n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(edges[1].address, epoch, epoch + 3n, 4n * r, 4n * commissionOf(r, 500n), anyPerShare());
    });

    it("pays a jailed watchdog nothing for its jailed epochs; its credits' share stays in the pool", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, oracle, registry, edges, watchdogs, slasher, epoch } = f;
      await (await oracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address], [8_000])).wait();
      await (await oracle.connect(watchdogs[1]).postScores(epoch, [edges[0].address], [8_000])).wait();
      await (await registry.connect(slasher).slash(watchdogs[0].address, 100, true)).wait();
      const { finalAt, creditsAt } = await deadlines(f, epoch);
      await moveTo(finalAt);
      await (await oracle.finalize(epoch, edges[0].address)).wait();
      await moveTo(creditsAt);
      await expect(distributor.claim(watchdogs[0].address, epoch))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(watchdogs[0].address, epoch, epoch, 0, 0, 0);
      const w = watchdogReward(TERMS, 1n, 2n);
      await expect(distributor.claim(watchdogs[1].address, epoch))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(watchdogs[1].address, epoch, epoch, w, commissionOf(w, 1_000n), anyPerShare());
    });

    it("leaves the quality shortfall, unearned pools and rounding dust in the pool", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, oracle, rewardPool, edges, watchdogs, epoch } = f;
      // Three edge nodes, one third of the work each, qualities 10,000, 7,000 and the default 5,000; no guardian
      // settled anything (forced inclusion) and nobody earned a credit: 100,000 emitted, far less claimable.
      for (const edge of edges) await (await double.settle(epoch, edge.address, 1n, ethers.ZeroAddress)).wait();
      await (
        await oracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address, edges[1].address], [10_000, 7_000])
      ).wait();
      const { creditsAt } = await deadlines(f, epoch);
      await moveTo(creditsAt); // after the credit deadline: the finalizations credit nobody
      const before = await rewardPool.balance();
      let claimable = 0n;
      const qualities = [10_000n, 7_000n, 5_000n];
      for (let i = 0; i < 3; i++) {
        const r = edgeReward(TERMS, 1n, 3n, qualities[i]);
        expect(await distributor.claim.staticCall(edges[i].address, epoch)).to.equal(r);
        await (await distributor.claim(edges[i].address, epoch)).wait();
        claimable += r;
      }
      for (const w of watchdogs) expect(await distributor.claim.staticCall(w.address, epoch)).to.equal(0n);
      // 70,000 x (1 + 0.7 + 0.5) / 3 = 51,333.33...: the quality shortfall, the 30,000 of the other pools and the
      // thirds' dust (each of the three rewards rounded down) stay in the pool.
      expect(claimable).to.equal(51_333_333_333_333_333_333_332n);
      expect(claimable).to.be.below(TERMS.emission);
      expect(await rewardPool.balance()).to.equal(before); // nothing moved yet: tokens leave only at withdrawal
      let withdrawn = 0n;
      for (const edge of edges) {
        const amount = await distributor.pendingRewards(edge.address, edge.address);
        await (await distributor.connect(edge).withdrawRewards(edge.address)).wait();
        withdrawn += amount;
      }
      expect(withdrawn).to.be.at.most(claimable);
      expect(await rewardPool.balance()).to.equal(before - withdrawn);
    });

    it("with fewer bonded shares than MIN_REWARD_SHARES, keeps the stakers' part in the pool and still owes the operator its commission", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, registry, edges, delegators, epoch } = f;
      const node = edges[2]; // 20% commission
      expect(await distributor.MIN_REWARD_SHARES()).to.equal(10n ** 18n);
      await (await double.settle(epoch, node.address, 10n, ethers.ZeroAddress)).wait();
      await (await double.settle(epoch + 1n, node.address, 10n, ethers.ZeroAddress)).wait();
      // The operator leaves; a delegator keeps half a token in the node.
      await (await registry.connect(delegators[0]).delegate(node.address, TOKEN / 2n)).wait();
      await (
        await registry.connect(node).unbond(node.address, await registry.stakeOf(node.address, node.address))
      ).wait();
      expect(await totalShares(f, node.address)).to.equal(TOKEN / 2n);
      await moveTo((await deadlines(f, epoch)).finalAt);
      const r = edgeReward(TERMS, 10n, 10n, 5_000n);
      await expect(distributor.claim(node.address, epoch))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(node.address, epoch, epoch, r, commissionOf(r, 2_000n), 0);
      expect(await distributor.pendingRewards(node.address, node.address)).to.equal(commissionOf(r, 2_000n));
      expect(await distributor.pendingRewards(node.address, delegators[0].address)).to.equal(0n);
      // The delegator leaves too: no shares at all.
      await (await registry.connect(delegators[0]).unbond(node.address, TOKEN / 2n)).wait();
      await moveTo((await deadlines(f, epoch + 1n)).finalAt);
      await expect(distributor.claim(node.address, epoch + 1n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(node.address, epoch + 1n, epoch + 1n, r, commissionOf(r, 2_000n), 0);
      expect(await distributor.pendingRewards(node.address, node.address)).to.equal(2n * commissionOf(r, 2_000n));
    });

    it("caps an epoch's commission by the commission cap fixed with its terms", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, parameters, governance, edges, epoch } = f;
      const node = edges[2]; // 20% commission, the local cap
      for (const e of [epoch, epoch + 1n]) await (await double.settle(e, node.address, 10n, ethers.ZeroAddress)).wait();
      await moveTo((await deadlines(f, epoch)).finalAt);
      await (await distributor.claim(edges[0].address, epoch)).wait(); // fixes E's terms, cap 2,000
      await setParameter(parameters, governance, "CommissionCapBps", 1_000n);
      await moveTo((await deadlines(f, epoch + 1n)).finalAt);
      const r = edgeReward(TERMS, 10n, 10n, 5_000n);
      // E keeps its cap of 20%; E + 1, fixed now, is capped at 10% though the operator set 20%.
      await expect(distributor.claim(node.address, epoch + 1n))
        .to.emit(distributor, "RewardsClaimed")
        .withArgs(
          node.address,
          epoch,
          epoch + 1n,
          2n * r,
          commissionOf(r, 2_000n) + commissionOf(r, 1_000n),
          anyPerShare(),
        );
      expect((await distributor.termsOf(epoch + 1n))[4]).to.equal(1_000n);
    });
  });

  describe("stakers", () => {
    it("splits a node's reward by bonded shares among operator and delegators, the commission to the operator", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, registry, token, edges, delegators, epoch } = f;
      const node = edges[2]; // 20% commission
      await (await registry.connect(delegators[0]).delegate(node.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(delegators[1]).delegate(node.address, 3_000n * TOKEN)).wait();
      await (await double.settle(epoch, node.address, 100n, ethers.ZeroAddress)).wait();
      await moveTo((await deadlines(f, epoch)).finalAt);
      await (await distributor.claim(node.address, epoch)).wait();
      // 35,000 earned (quality 5,000), 7,000 commission, 28,000 over 7,000 shares: 4 tokens a share.
      expect(await distributor.rewardPerShareOf(node.address)).to.equal(4n * SCALE);
      const expected = [
        [node, 7_000n * TOKEN + 3_000n * 4n * TOKEN],
        [delegators[0], 1_000n * 4n * TOKEN],
        [delegators[1], 3_000n * 4n * TOKEN],
      ] as const;
      for (const [staker, amount] of expected) {
        expect(await distributor.pendingRewards(node.address, staker.address)).to.equal(amount);
        await expect(distributor.connect(staker).withdrawRewards(node.address)).to.changeTokenBalance(
          token,
          staker,
          amount,
        );
      }
      await expect(distributor.connect(delegators[0]).withdrawRewards(node.address))
        .to.be.revertedWithCustomError(distributor, "RewardsNothingToWithdraw")
        .withArgs(node.address, delegators[0].address);
    });

    it("keeps what a staker earned on its old shares when it bonds more or unbonds", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, registry, edges, delegators, epoch } = f;
      const node = edges[0];
      const [d] = delegators;
      await (await registry.connect(d).delegate(node.address, 3_000n * TOKEN)).wait();
      await (await double.settle(epoch, node.address, 10n, ethers.ZeroAddress)).wait();
      await (await double.settle(epoch + 1n, node.address, 10n, ethers.ZeroAddress)).wait();
      await moveTo((await deadlines(f, epoch)).finalAt);
      await (await distributor.claim(node.address, epoch)).wait();
      const r = edgeReward(TERMS, 10n, 10n, 5_000n); // 35,000 over 6,000 shares
      const perShare0 = (r * SCALE) / (6_000n * TOKEN);
      const earned0 = (3_000n * TOKEN * perShare0) / SCALE;
      // Doubling the stake settles the first epoch at the old 3,000 shares.
      await (await registry.connect(d).delegate(node.address, 3_000n * TOKEN)).wait();
      expect(await distributor.pendingRewards(node.address, d.address)).to.equal(earned0);
      await moveTo((await deadlines(f, epoch + 1n)).finalAt);
      await (await distributor.claim(node.address, epoch + 1n)).wait();
      const perShare1 = (r * SCALE) / (9_000n * TOKEN);
      const earned1 = (6_000n * TOKEN * perShare1) / SCALE;
      expect(await distributor.pendingRewards(node.address, d.address)).to.equal(earned0 + earned1);
      // Leaving entirely keeps everything earned; nothing more accrues to a staker with no shares.
      await (await registry.connect(d).unbond(node.address, 6_000n * TOKEN)).wait();
      expect(await distributor.pendingRewards(node.address, d.address)).to.equal(earned0 + earned1);
      await expect(distributor.connect(d).withdrawRewards(node.address))
        .to.emit(distributor, "RewardsWithdrawn")
        .withArgs(node.address, d.address, earned0 + earned1);
    });

    it("gives an epoch's rewards to whoever holds the shares when it is claimed (the documented approximation)", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, registry, edges, delegators, epoch } = f;
      const node = edges[0];
      await (await double.settle(epoch, node.address, 10n, ethers.ZeroAddress)).wait();
      await moveTo((await deadlines(f, epoch)).finalAt);
      // A delegator who joins after the epoch but before its claim shares it.
      await (await registry.connect(delegators[0]).delegate(node.address, 3_000n * TOKEN)).wait();
      await (await distributor.claim(node.address, epoch)).wait();
      const r = edgeReward(TERMS, 10n, 10n, 5_000n);
      expect(await distributor.pendingRewards(node.address, delegators[0].address)).to.equal(
        (3_000n * TOKEN * ((r * SCALE) / (6_000n * TOKEN))) / SCALE,
      );
    });

    it("costs a delegator's withdrawal the same after one claimed epoch as after forty", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, registry, edges, delegators, epoch } = f;
      const [one, many] = [edges[0], edges[1]];
      await (await registry.connect(delegators[0]).delegate(one.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(delegators[1]).delegate(many.address, 1_000n * TOKEN)).wait();
      for (let i = 0n; i < 40n; i++) {
        await (await double.settle(epoch + i, many.address, 10n, ethers.ZeroAddress)).wait();
      }
      await (await double.settle(epoch, one.address, 10n, ethers.ZeroAddress)).wait();
      await moveTo((await deadlines(f, epoch + 39n)).finalAt);
      await (await distributor.claim(one.address, epoch)).wait();
      await (await distributor.claim(many.address, epoch + 19n)).wait();
      await (await distributor.claim(many.address, epoch + 39n)).wait();
      const gasOne = await gasOf(distributor.connect(delegators[0]).withdrawRewards(one.address));
      const gasMany = await gasOf(distributor.connect(delegators[1]).withdrawRewards(many.address));
      // Identical storage work; only the arithmetic on different amounts differs by a few gas.
      expect(gasMany - gasOne).to.be.within(-100n, 100n);
    });

    it("refuses a stake-hook call from anyone but the registry", async () => {
      const { distributor, outsider, edges } = await loadFixture(rewardsDoubleFixture);
      await expect(distributor.connect(outsider).beforeSharesChange(edges[0].address, outsider.address))
        .to.be.revertedWithCustomError(distributor, "RewardsNotRegistry")
        .withArgs(outsider.address);
    });

    it("pays nothing to a staker with nothing earned, before any claim", async () => {
      const { distributor, edges, outsider } = await loadFixture(rewardsDoubleFixture);
      await expect(distributor.connect(outsider).withdrawRewards(edges[0].address))
        .to.be.revertedWithCustomError(distributor, "RewardsNothingToWithdraw")
        .withArgs(edges[0].address, outsider.address);
    });
  });

  describe("views", () => {
    it("previews an epoch's reward before the claim, and reports unregistered nodes at zero", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { distributor, double, oracle, edges, watchdogs, guardians, outsider, epoch } = f;
      await (await double.settle(epoch, edges[0].address, 30n, guardians[0].address)).wait();
      await (await double.settle(epoch, edges[1].address, 10n, ethers.ZeroAddress)).wait();
      await (await oracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address], [6_000])).wait();
      expect(await distributor.rewardOf(edges[0].address, epoch)).to.equal(edgeReward(TERMS, 30n, 40n, 6_000n));
      expect(await distributor.rewardOf(guardians[0].address, epoch)).to.equal(guardianReward(TERMS, 30n, 30n));
      expect(await distributor.rewardOf(outsider.address, epoch)).to.equal(0n);
      await moveTo((await deadlines(f, epoch)).finalAt);
      await (await oracle.finalize(epoch, edges[0].address)).wait();
      expect(await distributor.rewardOf(watchdogs[0].address, epoch)).to.equal(watchdogReward(TERMS, 1n, 1n));
      expect(await distributor.termsOf(epoch)).to.deep.equal([TERMS.emission, 7_000n, 1_500n, 1_500n, 2_000n, false]);
      expect(await distributor.nextEpochOf(edges[0].address)).to.equal(epoch);
      await expect(distributor.nextEpochOf(outsider.address))
        .to.be.revertedWithCustomError(distributor, "RewardsNodeNotRegistered")
        .withArgs(outsider.address);
    });

    it("reports epochs before its first epoch as fixed at nothing (a successor distributor)", async () => {
      const f = await loadFixture(rewardsDoubleFixture);
      const { parameters, registry, rewardPool, deployer, edges } = f;
      const successor = await (
        await ethers.getContractFactory("RewardDistributor", deployer)
      ).deploy(
        await parameters.getAddress(),
        await registry.getAddress(),
        await f.double.getAddress(),
        await f.oracle.getAddress(),
        await rewardPool.getAddress(),
        5,
      );
      expect(await successor.termsOf(4)).to.deep.equal([0n, 0n, 0n, 0n, 0n, true]);
      expect(await successor.nextEpochOf(edges[0].address)).to.equal(5n);
      expect(await successor.fixedUntil()).to.equal(5n);
    });
  });
});

/** Any reward per share: for events whose other arguments are the point. */
function anyPerShare(): (value: bigint) => boolean {
  return () => true;
}
