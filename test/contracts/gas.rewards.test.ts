/**
 * Gas of the reward hot paths (see test/lib/gasReport.ts), with work settled by real proofs. Targets (docs/REWARDS.md):
 * a claim of one epoch at most 60,000 gas, each further epoch of a claim at most 15,000; a delegator's withdrawal costs
 * the same whatever the number of epochs (tested in rewards.test.ts).
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, setBalance } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { recordGas } from "../lib/gasReport";
import { rollupFixture } from "../fixtures/rollup";
import { fund, moveTo, qualityFixture, registerNode } from "../fixtures/rewards";
import { nodeIdFromAddress } from "../../sdk/bill/bill";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";

const CLAIM_ONE_EPOCH_TARGET = 60_000n;
const CLAIM_EXTRA_EPOCH_TARGET = 15_000n;
/** Epochs of settled work: epoch 0 from the rollup fixture's batch, then ten more, each proven here. */
const EPOCHS = 11n;

/**
 * Edges A and B with work in epochs 0 to 10 (real batches by the guardian), 10% commission from epoch 1, a delegator
 * of A, and a watchdog that scores both every epoch and finalizes them before the credit deadline (as a watchdog's
 * daemon would). The chain is left after epoch 10 is final and its credits too.
 */
async function settledEpochsFixture() {
  const base = await rollupFixture();
  const { token, registry, rollup, parameters, qualityOracle, signers, edgeA, edgeB, guardian, tree, billFor, prove } =
    base;
  const [watchdog, delegator] = [signers[6], signers[7]];
  await fund(token, registry, [watchdog, delegator]);
  await registerNode(registry, watchdog, NodeRole.Watchdog, 1_000);
  await (await registry.connect(delegator).delegate(edgeA.address, 3_000n * TOKEN)).wait();
  await (await registry.connect(edgeA).setCommission(1_000)).wait();
  await (await registry.connect(edgeB).setCommission(1_000)).wait();

  const e0 = base.epoch;
  const batches = [base.first];
  for (let e = e0 + 1n; e < e0 + EPOCHS; e++) {
    batches.push(
      await prove(
        [
          {
            nodeId: nodeIdFromAddress(edgeA.address),
            prevBound: 0n,
            bills: [billFor(0, edgeA.address, 40n, e), billFor(1, edgeA.address, 900n, e)],
          },
          { nodeId: nodeIdFromAddress(edgeB.address), prevBound: 0n, bills: [billFor(2, edgeB.address, 70n, e)] },
        ],
        e,
      ),
    );
  }
  const nodes = [edgeA.address, edgeB.address];
  for (let i = 0n; i < EPOCHS; i++) {
    const e = e0 + i;
    await (await qualityOracle.connect(watchdog).postScores(e, nodes, [9_000, 8_000])).wait();
    await moveTo(await parameters.epochStart(e + 1n));
    const batch = batches[Number(i)];
    await (await rollup.connect(guardian).submitBatch(e, tree.root, batch.slots, batch.proof)).wait();
    await moveTo(await rollup.settlementDeadline(e));
    for (const node of nodes) await (await qualityOracle.connect(watchdog).finalize(e, node)).wait();
  }
  const last = e0 + EPOCHS - 1n;
  await moveTo((await qualityOracle.rulesOf(last))[0].creditDeadline);
  return { ...base, watchdog, delegator, e0, last };
}

/** `count` registered edge nodes (fresh wallets) for a watchdog to score. */
async function manyEdges(f: Awaited<ReturnType<typeof qualityFixture>>, count: number): Promise<string[]> {
  const wallets: HardhatEthersSigner[] = [];
  for (let i = 0; i < count; i++) {
    const wallet = ethers.Wallet.createRandom().connect(ethers.provider);
    await setBalance(wallet.address, ethers.parseEther("1"));
    wallets.push(wallet as unknown as HardhatEthersSigner);
  }
  await fund(f.token, f.registry, wallets);
  for (const wallet of wallets) await registerNode(f.registry, wallet, NodeRole.Edge, 0, 1_000n * TOKEN);
  return wallets.map((w) => w.address);
}

describe("gas of the reward hot paths (compared with gas-report.json)", () => {
  it("measures claims of one and of ten epochs against their targets, a delegator's withdrawal, a guardian's and a watchdog's claim", async () => {
    const { distributor, edgeA, edgeB, guardian, watchdog, delegator, e0, last } =
      await loadFixture(settledEpochsFixture);
    // Warm-up, as in a running network: each edge node has claimed before (its first claim sets its account) and its
    // operator has withdrawn once; the terms of every epoch are fixed by whoever claimed them first (here the guardian,
    // whose first claim of eleven epochs is measured too).
    await (await distributor.claim(edgeA.address, e0)).wait();
    await (await distributor.claim(edgeB.address, e0)).wait();
    await (await distributor.connect(edgeA).withdrawRewards(edgeA.address)).wait();
    await (await distributor.connect(edgeB).withdrawRewards(edgeB.address)).wait();
    await recordGas(
      "RewardDistributor.claim (guardian, first claim, 11 epochs, fixes terms)",
      distributor.claim(guardian.address, last),
    );

    const one = await recordGas("RewardDistributor.claim (edge, 1 epoch)", distributor.claim(edgeB.address, e0 + 1n));
    const ten = await recordGas("RewardDistributor.claim (edge, 10 epochs)", distributor.claim(edgeA.address, last));
    const perExtraEpoch = (ten - one) / 9n;
    console.log(
      `      claim: 1 epoch ${one} gas (target ${CLAIM_ONE_EPOCH_TARGET}), each further epoch ${perExtraEpoch} (target ${CLAIM_EXTRA_EPOCH_TARGET})`,
    );
    expect(one).to.be.at.most(CLAIM_ONE_EPOCH_TARGET);
    expect(perExtraEpoch).to.be.at.most(CLAIM_EXTRA_EPOCH_TARGET);

    await recordGas(
      "RewardDistributor.withdrawRewards (delegator)",
      distributor.connect(delegator).withdrawRewards(edgeA.address),
    );
    await recordGas(
      "RewardDistributor.withdrawRewards (operator, with commission)",
      distributor.connect(edgeA).withdrawRewards(edgeA.address),
    );
    await recordGas(
      "RewardDistributor.claim (watchdog, first claim, 11 epochs)",
      distributor.claim(watchdog.address, last),
    );
  });

  it("measures the stake hook: a delegation that settles earlier rewards", async () => {
    const { distributor, registry, edgeA, delegator, e0 } = await loadFixture(settledEpochsFixture);
    await (await distributor.claim(edgeA.address, e0)).wait();
    await recordGas(
      "NodeRegistry.delegate (more, hook settles rewards)",
      registry.connect(delegator).delegate(edgeA.address, 1_000n * TOKEN),
    );
  });

  it("measures a watchdog's scores for 50 edge nodes, first and second watchdog, and a finalization", async () => {
    const f = await loadFixture(qualityFixture);
    const { qualityOracle, watchdogs, epoch } = f;
    const nodes = await manyEdges(f, 50);
    const scores = nodes.map((_, i) => 7_000 + (i % 10) * 100);
    await recordGas(
      "QualityOracle.postScores (50 nodes, first scores)",
      qualityOracle.connect(watchdogs[0]).postScores(epoch, nodes, scores),
    );
    await recordGas(
      "QualityOracle.postScores (50 nodes, second watchdog)",
      qualityOracle.connect(watchdogs[1]).postScores(epoch, nodes, scores),
    );
    await (await qualityOracle.connect(watchdogs[2]).postScores(epoch, nodes.slice(0, 1), [9_500])).wait();
    await moveTo(await f.rollup.settlementDeadline(epoch));
    await recordGas("QualityOracle.finalize (3 scores, credits 2)", qualityOracle.finalize(epoch, nodes[0]));
  });
});
