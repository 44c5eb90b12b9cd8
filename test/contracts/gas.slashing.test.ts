/**
 * Gas of each slashing path (see test/lib/gasReport.ts): a storage challenge, its two answers and its slash, an
 * equivocation report, and a flag with its votes and resolution.
 */
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { recordGas } from "../lib/gasReport";
import {
  WATCHDOG_STAKE,
  conflictingStatements,
  makePromise,
  registerNode,
  setParameter,
  signPromise,
  slashingEvent,
  slashingFixture,
} from "../fixtures/slashing";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import { signAck, statementSlot } from "../../sdk/chain/slashing";

describe("gas of the slashing paths (compared with gas-report.json)", () => {
  it("measures a storage challenge: challenge, answer with an ack, answer with the message, resolve unanswered", async () => {
    const f = await loadFixture(slashingFixture);
    const { slashing, edge, edgeSigner, challenger, recipient, outsider, domain } = f;

    const acked = await makePromise(recipient.address, "acknowledged envelope");
    await recordGas(
      "Slashing.challenge",
      slashing
        .connect(challenger)
        .challenge(edge.address, acked.promise, await signPromise(domain, edgeSigner, acked.promise)),
    );
    const ackSignature = await signAck(recipient, domain, {
      messageHash: acked.promise.messageHash,
      node: edge.address,
    });
    await recordGas(
      "Slashing.answerWithAck",
      slashing.connect(edge).answerWithAck(await slashing.promiseId(edge.address, acked.promise), ackSignature),
    );

    // A 1 KiB message: about the size of a fixed-size packet's payload.
    const message = "0x" + "a5".repeat(1_024); // no zero bytes, so the calldata cost is fixed
    const held = await makePromise(recipient.address, "unused");
    const promise = { ...held.promise, messageHash: ethers.keccak256(message) };
    await (
      await slashing
        .connect(challenger)
        .challenge(edge.address, promise, await signPromise(domain, edgeSigner, promise))
    ).wait();
    await recordGas(
      "Slashing.answerWithMessage (1 KiB)",
      slashing.connect(edgeSigner).answerWithMessage(await slashing.promiseId(edge.address, promise), message),
    );

    const lost = await makePromise(recipient.address, "lost envelope");
    await (
      await slashing
        .connect(challenger)
        .challenge(edge.address, lost.promise, await signPromise(domain, edgeSigner, lost.promise))
    ).wait();
    await time.increase(120);
    await recordGas(
      "Slashing.resolveChallenge (slash)",
      slashing.connect(outsider).resolveChallenge(await slashing.promiseId(edge.address, lost.promise)),
    );
  });

  it("measures an equivocation report", async () => {
    const f = await loadFixture(slashingFixture);
    const { slashing, edge, edgeSigner, outsider, domain } = f;
    const s = await conflictingStatements(domain, edgeSigner, 1n, statementSlot("bill", ethers.id("recipient")));
    await recordGas(
      "Slashing.reportEquivocation",
      slashing
        .connect(outsider)
        .reportEquivocation(edge.address, s.first, s.firstSignature, s.second, s.secondSignature),
    );
  });

  it("measures a flag drawing five reviewers, a vote, and its resolution upheld and rejected", async () => {
    const f = await loadFixture(slashingFixture);
    const { slashing, token, registry, edge, edge2, outsider, signers } = f;
    // A sixth watchdog; ReviewerCount above the five others draws all of them whatever the randomness, so the
    // number of registry reads, and the gas, does not depend on prevrandao.
    const sixth = signers[14];
    await (await token.transfer(sixth.address, 10_000n * TOKEN)).wait();
    await (await token.connect(sixth).approve(await registry.getAddress(), ethers.MaxUint256)).wait();
    await (await token.connect(sixth).approve(await slashing.getAddress(), ethers.MaxUint256)).wait();
    await registerNode(f, sixth, NodeRole.Watchdog, WATCHDOG_STAKE);
    await setParameter(f, "ReviewerCount", 21n);

    const flagTx = slashing.connect(sixth).flag(edge.address, ethers.id("probe log"));
    await recordGas("Slashing.flag (5 reviewers drawn of 6 watchdogs)", flagTx);
    const receipt = (await (await flagTx).wait())!;
    const event = slashingEvent(slashing, receipt, "NodeFlagged");
    const flagId = event.args.flagId as bigint;
    const reviewers = (event.args.reviewers as string[]).map((a) => signers.find((s) => s.address === a)!);
    await recordGas("Slashing.vote", slashing.connect(reviewers[0]).vote(flagId, true));
    await (await slashing.connect(reviewers[1]).vote(flagId, true)).wait();
    await (await slashing.connect(reviewers[2]).vote(flagId, true)).wait();
    await (await slashing.connect(reviewers[3]).vote(flagId, false)).wait();
    await (await slashing.connect(reviewers[4]).vote(flagId, false)).wait();
    await recordGas("Slashing.resolveFlag (upheld, 3 of 5 paid)", slashing.connect(outsider).resolveFlag(flagId));

    const second = await (await slashing.connect(sixth).flag(edge2.address, ethers.id("probe log 2"))).wait();
    const secondId = slashingEvent(slashing, second!, "NodeFlagged").args.flagId as bigint;
    const secondReviewers = (slashingEvent(slashing, second!, "NodeFlagged").args.reviewers as string[]).map((a) =>
      signers.find((s) => s.address === a)!,
    );
    for (const [i, r] of secondReviewers.entries()) await (await slashing.connect(r).vote(secondId, i < 2)).wait();
    await recordGas("Slashing.resolveFlag (rejected, 3 of 5 paid)", slashing.connect(outsider).resolveFlag(secondId));
  });
});
