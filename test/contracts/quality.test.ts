import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { fund, moveTo, qualityFixture, registerNode, setParameter } from "../fixtures/rewards";
import { finalizeQuality, median } from "../lib/rewardsModel";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";

type Fixture = Awaited<ReturnType<typeof qualityFixture>>;

/** Posting for `epoch` closes at the rollup's settlement deadline (local: epoch end + 300 s). */
async function postingDeadline(f: Fixture, epoch: bigint): Promise<bigint> {
  return f.rollup.settlementDeadline(epoch);
}

/** Each of `watchdogs` posts its score for `node` in the fixture's epoch. */
async function postAll(f: Fixture, node: string, scores: number[], watchdogs = f.watchdogs): Promise<void> {
  for (let i = 0; i < scores.length; i++) {
    await (await f.qualityOracle.connect(watchdogs[i]).postScores(f.epoch, [node], [scores[i]])).wait();
  }
}

/** `count` more registered, funded watchdogs (fresh wallets: the fixture's signers run out). */
async function moreWatchdogs(f: Fixture, count: number): Promise<HardhatEthersSigner[]> {
  const wallets: HardhatEthersSigner[] = [];
  for (let i = 0; i < count; i++) {
    const wallet = ethers.Wallet.createRandom().connect(ethers.provider);
    await setBalance(wallet.address, ethers.parseEther("1"));
    wallets.push(wallet as unknown as HardhatEthersSigner);
  }
  await fund(f.token, f.registry, wallets);
  for (const wallet of wallets) await registerNode(f.registry, wallet, NodeRole.Watchdog);
  return wallets;
}

describe("QualityOracle", () => {
  describe("deploy", () => {
    it("is wired to the deployed parameters, registry and rollup, and bounds the scores per node at 32", async () => {
      const { qualityOracle } = await loadFixture(qualityFixture);
      expect(await qualityOracle.MAX_SCORES_PER_NODE()).to.equal(32n);
    });
  });

  describe("postScores", () => {
    it("records a watchdog's scores, fixes the epoch's rules at the first post and announces both", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const deadline = await postingDeadline(f, epoch);
      const nodes = [edges[0].address, edges[1].address];
      const tx = qualityOracle.connect(watchdogs[0]).postScores(epoch, nodes, [9_000, 10_000]);
      await expect(tx)
        .to.emit(qualityOracle, "ScoresPosted")
        .withArgs(epoch, watchdogs[0].address, nodes, [9_000, 10_000]);
      await expect(tx)
        .to.emit(qualityOracle, "EpochRulesFixed")
        .withArgs(epoch, deadline, deadline + 300n, 1, 5_000, 1_000);
      const [rules, fixed] = await qualityOracle.rulesOf(epoch);
      expect(fixed).to.equal(true);
      expect([
        rules.postingDeadline,
        rules.creditDeadline,
        rules.quorum,
        rules.defaultQualityBps,
        rules.bandBps,
      ]).to.deep.equal([deadline, deadline + 300n, 1n, 5_000n, 1_000n]);
      const [watchdogsOfA, scoresOfA] = await qualityOracle.scoresOf(edges[0].address, epoch);
      expect([...watchdogsOfA]).to.deep.equal([watchdogs[0].address]);
      expect([...scoresOfA]).to.deep.equal([9_000n]);

      // A second watchdog's post does not fix the rules again.
      await expect(qualityOracle.connect(watchdogs[1]).postScores(epoch, nodes, [8_000, 0])).not.to.emit(
        qualityOracle,
        "EpochRulesFixed",
      );
      const [watchdogsOfB, scoresOfB] = await qualityOracle.scoresOf(edges[1].address, epoch);
      expect([...watchdogsOfB]).to.deep.equal([watchdogs[0].address, watchdogs[1].address]);
      expect([...scoresOfB]).to.deep.equal([10_000n, 0n]);
    });

    it("refuses callers that are not active watchdogs: an edge node, a guardian, an outsider, a jailed watchdog", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, registry, edges, watchdogs, guardian, outsider, slasher, epoch } = f;
      await (await registry.connect(slasher).slash(watchdogs[4].address, 0, true)).wait();
      for (const caller of [edges[0], guardian, outsider, watchdogs[4]]) {
        await expect(qualityOracle.connect(caller).postScores(epoch, [edges[1].address], [5_000]))
          .to.be.revertedWithCustomError(qualityOracle, "QualityNotWatchdog")
          .withArgs(caller.address);
      }
    });

    it("refuses a watchdog whose self-stake fell under its role's minimum", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, registry, edges, watchdogs, governance, epoch } = f;
      await setParameter(f.parameters, governance, "MinStakeWatchdog", 5_000n * TOKEN);
      expect(await registry.isActive(watchdogs[0].address)).to.equal(false);
      await expect(qualityOracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address], [5_000]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityNotWatchdog")
        .withArgs(watchdogs[0].address);
    });

    it("refuses node and score lists of different lengths", async () => {
      const { qualityOracle, edges, watchdogs, epoch } = await loadFixture(qualityFixture);
      await expect(qualityOracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address, edges[1].address], [1]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityLengthMismatch")
        .withArgs(2, 1);
    });

    it("refuses a score above 10,000 basis points and accepts exactly 10,000 and 0", async () => {
      const { qualityOracle, edges, watchdogs, epoch } = await loadFixture(qualityFixture);
      await expect(qualityOracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address], [10_001]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityScoreTooHigh")
        .withArgs(edges[0].address, 10_001);
      await expect(
        qualityOracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address, edges[1].address], [10_000, 0]),
      ).to.emit(qualityOracle, "ScoresPosted");
    });

    it("refuses a node that is not a registered edge node: a watchdog, a guardian, an unregistered address", async () => {
      const { qualityOracle, watchdogs, guardian, outsider, epoch } = await loadFixture(qualityFixture);
      for (const node of [watchdogs[1].address, guardian.address, outsider.address]) {
        await expect(qualityOracle.connect(watchdogs[0]).postScores(epoch, [node], [5_000]))
          .to.be.revertedWithCustomError(qualityOracle, "QualityNotEdgeNode")
          .withArgs(node);
      }
    });

    it("refuses a second score by the same watchdog for the same node and epoch, in one call or two", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const [w] = watchdogs;
      await expect(qualityOracle.connect(w).postScores(epoch, [edges[0].address, edges[0].address], [1, 2]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityAlreadyScored")
        .withArgs(w.address, edges[0].address, epoch);
      await (await qualityOracle.connect(w).postScores(epoch, [edges[0].address], [5_000])).wait();
      await expect(qualityOracle.connect(w).postScores(epoch, [edges[0].address], [6_000]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityAlreadyScored")
        .withArgs(w.address, edges[0].address, epoch);
      // The same node in the next epoch is a new score.
      await moveTo(await f.parameters.epochStart(epoch + 1n));
      await expect(qualityOracle.connect(w).postScores(epoch + 1n, [edges[0].address], [6_000])).to.emit(
        qualityOracle,
        "ScoresPosted",
      );
    });

    it("takes 32 scores for one node in one epoch and refuses the 33rd, finding repeats in every storage word", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, epoch } = f;
      const extra = await moreWatchdogs(f, 28);
      const all = [...f.watchdogs, ...extra]; // 33 watchdogs
      const node = edges[0].address;
      for (let i = 0; i < 32; i++) {
        await (await qualityOracle.connect(all[i]).postScores(epoch, [node], [i * 300])).wait();
      }
      await expect(qualityOracle.connect(all[32]).postScores(epoch, [node], [5_000]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityTooManyScores")
        .withArgs(node, epoch, 32);
      // A repeat by the first, the fifth (first entry of word 1) and the last watchdog (word 6) is still a repeat.
      for (const i of [0, 4, 31]) {
        await expect(qualityOracle.connect(all[i]).postScores(epoch, [node], [1]))
          .to.be.revertedWithCustomError(qualityOracle, "QualityAlreadyScored")
          .withArgs(all[i].address, node, epoch);
      }
      const [watchdogs, scores] = await qualityOracle.scoresOf(node, epoch);
      expect([...watchdogs]).to.deep.equal(all.slice(0, 32).map((w) => w.address));
      expect(scores.map(Number)).to.deep.equal([...Array(32).keys()].map((i) => i * 300));
      // Another node of the same epoch still has room.
      await expect(qualityOracle.connect(all[32]).postScores(epoch, [edges[1].address], [5_000])).to.emit(
        qualityOracle,
        "ScoresPosted",
      );
      // The median of the 32 scores: (15 x 300 + 16 x 300) / 2 rounded down.
      await moveTo(await postingDeadline(f, epoch));
      expect(await qualityOracle.finalize.staticCall(epoch, node)).to.equal(
        median([...Array(32).keys()].map((i) => i * 300)),
      );
    });

    it("opens posting at the epoch's start: refuses scores for a future epoch", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, parameters, edges, watchdogs, epoch } = f;
      const next = epoch + 1n;
      const opensAt = await parameters.epochStart(next);
      await expect(qualityOracle.connect(watchdogs[0]).postScores(next, [edges[0].address], [5_000]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityPostingNotOpen")
        .withArgs(next, opensAt);
      await time.setNextBlockTimestamp(opensAt);
      await expect(qualityOracle.connect(watchdogs[0]).postScores(next, [edges[0].address], [5_000])).to.emit(
        qualityOracle,
        "ScoresPosted",
      );
    });

    it("closes posting at the rollup's settlement deadline: accepts a second before, refuses at it", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const deadline = await postingDeadline(f, epoch);
      await time.setNextBlockTimestamp(deadline - 1n);
      await expect(qualityOracle.connect(watchdogs[0]).postScores(epoch, [edges[0].address], [5_000])).to.emit(
        qualityOracle,
        "ScoresPosted",
      );
      await expect(qualityOracle.connect(watchdogs[1]).postScores(epoch, [edges[0].address], [5_000]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityPostingClosed")
        .withArgs(epoch, deadline);
    });

    it("keeps an epoch's rules once fixed: governance changes apply to epochs not yet touched", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, parameters, governance, edges, watchdogs, epoch } = f;
      await postAll(f, edges[0].address, [9_000, 7_000]);
      await setParameter(parameters, governance, "QualityQuorum", 3n);
      await setParameter(parameters, governance, "DefaultQualityBps", 1_000n);
      await setParameter(parameters, governance, "ScoreBandBps", 0n);
      await setParameter(parameters, governance, "SettlementWindow", 600n);
      const [rules] = await qualityOracle.rulesOf(epoch);
      expect([rules.quorum, rules.defaultQualityBps, rules.bandBps]).to.deep.equal([1n, 5_000n, 1_000n]);
      // The posting deadline stays the one fixed at the first post, though the rollup's moved on.
      expect(await f.rollup.settlementDeadline(epoch)).to.equal(rules.postingDeadline + 300n);
      await expect(qualityOracle.connect(watchdogs[2]).postScores(epoch, [edges[0].address], [1]))
        .to.emit(qualityOracle, "ScoresPosted")
        .and.not.to.emit(qualityOracle, "EpochRulesFixed");
      await moveTo(rules.postingDeadline);
      await expect(qualityOracle.connect(watchdogs[2]).postScores(epoch, [edges[1].address], [1]))
        .to.be.revertedWithCustomError(qualityOracle, "QualityPostingClosed")
        .withArgs(epoch, rules.postingDeadline);
      // Quorum 1 of the epoch: the median of 9,000, 7,000 and 1 is 7,000, and the band of 1,000 credits 7,000 only.
      await expect(qualityOracle.finalize(epoch, edges[0].address))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, edges[0].address, 7_000, 3, 1);
      // The next epoch, untouched until now, takes the new values.
      await moveTo(await parameters.epochStart(epoch + 1n));
      await (await qualityOracle.connect(watchdogs[0]).postScores(epoch + 1n, [edges[0].address], [1])).wait();
      const [next] = await qualityOracle.rulesOf(epoch + 1n);
      expect([next.quorum, next.defaultQualityBps, next.bandBps]).to.deep.equal([3n, 1_000n, 0n]);
      expect(next.creditDeadline - next.postingDeadline).to.equal(600n);
    });
  });

  describe("finalize", () => {
    it("refuses before posting closes", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, epoch } = f;
      await postAll(f, edges[0].address, [8_000]);
      const deadline = await postingDeadline(f, epoch);
      await expect(qualityOracle.finalize(epoch, edges[0].address))
        .to.be.revertedWithCustomError(qualityOracle, "QualityPostingOpen")
        .withArgs(epoch, deadline);
      await time.setNextBlockTimestamp(deadline);
      await expect(qualityOracle.finalize(epoch, edges[0].address)).to.emit(qualityOracle, "QualityFinalized");
    });

    it("fixes the median of an odd count of scores and credits the watchdogs within the band only", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const node = edges[0].address;
      await postAll(f, node, [9_000, 6_500, 7_000]);
      await moveTo(await postingDeadline(f, epoch));
      await expect(qualityOracle.finalize(epoch, node))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, node, 7_000, 3, 2);
      expect(await qualityOracle.qualityOf(node, epoch)).to.deep.equal([7_000n, true]);
      expect(await qualityOracle.isFinalized(node, epoch)).to.equal(true);
      const credits = await Promise.all(watchdogs.slice(0, 3).map((w) => qualityOracle.creditsOf(w.address, epoch)));
      expect(credits.map((c) => c[0])).to.deep.equal([0n, 1n, 1n]);
      expect(credits[0][1]).to.equal(2n);
    });

    it("fixes the mean of the two middle scores, rounded down, for an even count", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const node = edges[1].address;
      const scores = [8_000, 1_000, 7_001, 6_000];
      await postAll(f, node, scores);
      await moveTo(await postingDeadline(f, epoch));
      // Sorted 1,000 6,000 7,001 8,000: (6,000 + 7,001) / 2 = 6,500 (rounded down); band 1,000 credits 6,000 and 7,001.
      const model = finalizeQuality(
        scores.map((score, i) => ({ watchdog: watchdogs[i].address, score })),
        { quorum: 1, defaultQualityBps: 5_000, bandBps: 1_000 },
        true,
      );
      expect(model.quality).to.equal(6_500);
      await expect(qualityOracle.finalize(epoch, node))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, node, 6_500, 4, 2);
      for (let i = 0; i < 4; i++) {
        const [credits] = await qualityOracle.creditsOf(watchdogs[i].address, epoch);
        expect(credits).to.equal(model.credited.includes(watchdogs[i].address) ? 1n : 0n);
      }
    });

    it("credits a score exactly at the band's edge and none a basis point beyond", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const node = edges[0].address;
      await postAll(f, node, [4_000, 5_000, 6_001]);
      await moveTo(await postingDeadline(f, epoch));
      await expect(qualityOracle.finalize(epoch, node))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, node, 5_000, 3, 2);
      expect((await qualityOracle.creditsOf(watchdogs[0].address, epoch))[0]).to.equal(1n);
      expect((await qualityOracle.creditsOf(watchdogs[2].address, epoch))[0]).to.equal(0n);
    });

    it("with a band of zero, credits only the scores equal to the median", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, parameters, governance, edges, epoch } = f;
      await setParameter(parameters, governance, "ScoreBandBps", 0n);
      await postAll(f, edges[0].address, [7_000, 7_000, 7_001]);
      await moveTo(await postingDeadline(f, epoch));
      await expect(qualityOracle.finalize(epoch, edges[0].address))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, edges[0].address, 7_000, 3, 2);
    });

    it("below the quorum: the default quality, nobody credited, nothing stored", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, parameters, governance, edges, watchdogs, epoch } = f;
      await setParameter(parameters, governance, "QualityQuorum", 3n);
      await postAll(f, edges[0].address, [9_000, 9_000]);
      await moveTo(await postingDeadline(f, epoch));
      expect(await qualityOracle.finalize.staticCall(epoch, edges[0].address)).to.equal(5_000n);
      await expect(qualityOracle.finalize(epoch, edges[0].address)).not.to.emit(qualityOracle, "QualityFinalized");
      expect(await qualityOracle.isFinalized(edges[0].address, epoch)).to.equal(false);
      expect(await qualityOracle.qualityOf(edges[0].address, epoch)).to.deep.equal([5_000n, true]);
      expect(await qualityOracle.creditsOf(watchdogs[0].address, epoch)).to.deep.equal([
        0n,
        0n,
        (await qualityOracle.rulesOf(epoch))[0].creditDeadline,
      ]);
    });

    it("at exactly the quorum, takes the median", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, parameters, governance, edges, epoch } = f;
      await setParameter(parameters, governance, "QualityQuorum", 3n);
      await postAll(f, edges[0].address, [9_000, 8_000, 2_000]);
      await moveTo(await postingDeadline(f, epoch));
      await expect(qualityOracle.finalize(epoch, edges[0].address))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, edges[0].address, 8_000, 3, 2);
    });

    it("gives a node nobody scored the default quality, fixing the rules of an epoch nobody touched", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, parameters, governance, edges, epoch } = f;
      await setParameter(parameters, governance, "DefaultQualityBps", 4_200n);
      const deadline = await postingDeadline(f, epoch);
      expect(await qualityOracle.creditsOf(f.watchdogs[0].address, epoch)).to.deep.equal([0n, 0n, deadline]);
      await moveTo(deadline);
      expect(await qualityOracle.qualityOf(edges[2].address, epoch)).to.deep.equal([4_200n, false]);
      await expect(qualityOracle.finalize(epoch, edges[2].address))
        .to.emit(qualityOracle, "EpochRulesFixed")
        .withArgs(epoch, deadline, deadline + 300n, 1, 4_200, 1_000);
      await setParameter(parameters, governance, "DefaultQualityBps", 9_000n);
      expect(await qualityOracle.finalize.staticCall(epoch, edges[2].address)).to.equal(4_200n);
      expect(await qualityOracle.qualityOf(edges[2].address, epoch)).to.deep.equal([4_200n, true]);
    });

    it("returns the stored quality on a second call: no second credit, no event", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      await postAll(f, edges[0].address, [7_500]);
      await moveTo(await postingDeadline(f, epoch));
      await (await qualityOracle.finalize(epoch, edges[0].address)).wait();
      await expect(qualityOracle.finalize(epoch, edges[0].address)).not.to.emit(qualityOracle, "QualityFinalized");
      expect(await qualityOracle.finalize.staticCall(epoch, edges[0].address)).to.equal(7_500n);
      expect((await qualityOracle.creditsOf(watchdogs[0].address, epoch))[0]).to.equal(1n);
      expect((await qualityOracle.rulesOf(epoch))[0].totalCredits).to.equal(1n);
    });

    it("after the credit deadline still fixes the quality but credits nobody", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      await postAll(f, edges[0].address, [7_000, 7_100]);
      await postAll(f, edges[1].address, [3_000]);
      const [rules] = await qualityOracle.rulesOf(epoch);
      await time.setNextBlockTimestamp(rules.creditDeadline - 1n);
      await expect(qualityOracle.finalize(epoch, edges[1].address))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, edges[1].address, 3_000, 1, 1);
      await expect(qualityOracle.finalize(epoch, edges[0].address))
        .to.emit(qualityOracle, "QualityFinalized")
        .withArgs(epoch, edges[0].address, 7_050, 2, 0);
      expect(await qualityOracle.creditsOf(watchdogs[1].address, epoch)).to.deep.equal([0n, 1n, rules.creditDeadline]);
      expect(await qualityOracle.creditsOf(watchdogs[0].address, epoch)).to.deep.equal([1n, 1n, rules.creditDeadline]);
    });

    it("sums a watchdog's credits over the nodes it scored within the band", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, watchdogs, epoch } = f;
      const nodes = edges.map((e) => e.address);
      await (await qualityOracle.connect(watchdogs[0]).postScores(epoch, nodes, [8_000, 8_000, 1_000])).wait();
      await (await qualityOracle.connect(watchdogs[1]).postScores(epoch, nodes, [8_000, 9_500, 9_000])).wait();
      await (await qualityOracle.connect(watchdogs[2]).postScores(epoch, nodes, [7_500, 9_000, 9_000])).wait();
      await moveTo(await postingDeadline(f, epoch));
      for (const node of nodes) await (await qualityOracle.finalize(epoch, node)).wait();
      // Medians: 8,000, 9,000, 9,000. Credits: w0 2 (A, B), w1 3, w2 3.
      const credits = await Promise.all(watchdogs.slice(0, 3).map((w) => qualityOracle.creditsOf(w.address, epoch)));
      expect(credits.map((c) => c[0])).to.deep.equal([2n, 3n, 3n]);
      expect(credits[0][1]).to.equal(8n);
    });
  });

  describe("qualityOf", () => {
    it("previews the median while posting is open and says it may still change", async () => {
      const f = await loadFixture(qualityFixture);
      const { qualityOracle, edges, epoch } = f;
      expect(await qualityOracle.qualityOf(edges[0].address, epoch)).to.deep.equal([5_000n, false]);
      await postAll(f, edges[0].address, [9_000, 3_000]);
      expect(await qualityOracle.qualityOf(edges[0].address, epoch)).to.deep.equal([6_000n, false]);
      await moveTo(await postingDeadline(f, epoch));
      expect(await qualityOracle.qualityOf(edges[0].address, epoch)).to.deep.equal([6_000n, true]);
      expect(await qualityOracle.isFinalized(edges[0].address, epoch)).to.equal(false);
    });
  });
});
