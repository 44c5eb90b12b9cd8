import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import type { ContractTransactionReceipt, ContractTransactionResponse, EventLog } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { moveTo, NODE_STAKE, rewardsDoubleFixture, setParameter } from "../fixtures/rewards";
import {
  edgeReward,
  finalizeQuality,
  guardianReward,
  JailModel,
  NodeRewardsModel,
  poolOf,
  watchdogReward,
  type EpochTerms,
} from "../lib/rewardsModel";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";

/**
 * Property tests of quality scores and rewards against the independent model in test/lib/rewardsModel.ts: random
 * epochs of stake moves, settled work (through the rollup views TEST DOUBLE), watchdog scores, finalizations, slashes
 * with and without jail, emission changes, claims and withdrawals. Every claim's reward, commission and reward per
 * share, every withdrawal and every pending amount must equal the model to the wei; tokens are conserved; nothing
 * claimable for an epoch exceeds its emission. A failure prints fast-check's seed and path; replay it with
 * `FC_SEED=<seed> FC_PATH=<path> npx hardhat test test/contracts/rewards.property.test.ts`.
 * The end-to-end path with the real rollup and real proofs is in rewards.test.ts.
 */

const EPOCH_LENGTH = 600n;
/** Phase A of an epoch (stake moves, scores) and phase B (work, finalizations, slashes, claims, withdrawals). */
const PHASE_A = 100n;
const PHASE_B = 400n;
const JAIL_PERIOD = 600n;
const QUALITY_RULES = { quorum: 1, defaultQualityBps: 5_000, bandBps: 1_000 };
const MIN_STAKE: Record<number, bigint> = {
  [NodeRole.Edge]: 1_000n * TOKEN,
  [NodeRole.Watchdog]: 500n * TOKEN,
  [NodeRole.Guardian]: 2_000n * TOKEN,
};

function runParameters(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED;
  return seed === undefined ? { numRuns } : { numRuns, seed: Number(seed), path: process.env.FC_PATH };
}

// ---------------------------------------------------------------- the random program

interface StakeOp {
  kind: "delegate" | "unbond" | "commission";
  delegator: number;
  node: number;
  amount: number;
}

interface EpochPlan {
  ops: StakeOp[];
  /** Per watchdog: nothing, or per edge node a score or nothing. */
  scores: ((number | null)[] | null)[];
  /** Per edge node: nothing, or work and the guardian credited (-1: a forced batch, no guardian). */
  work: ({ amount: number; guardian: number } | null)[];
  /** Per edge node: finalize its quality in the next epoch's phase B, before the credit deadline. */
  finalize: boolean[];
  slash: { node: number; bps: number; jail: boolean } | null;
  emission: number | null;
  claims: { node: number; back: number }[];
  withdrawals: { node: number; staker: number }[];
}

/** Scores 1,000 apart (the local band) are frequent, so medians and the band's edges meet often. */
const score = fc.oneof(
  { arbitrary: fc.constantFrom(4_000, 5_000, 6_000, 7_000, 10_000), weight: 3 },
  { arbitrary: fc.integer({ min: 0, max: 10_000 }), weight: 1 },
);
const epochPlan: fc.Arbitrary<EpochPlan> = fc.record({
  ops: fc.array(
    fc.record({
      kind: fc.constantFrom("delegate" as const, "unbond" as const, "commission" as const),
      delegator: fc.nat(2),
      node: fc.nat(7),
      amount: fc.integer({ min: 1, max: 3_000 }),
    }),
    { maxLength: 3 },
  ),
  scores: fc.tuple(
    ...[0, 1, 2].map(() => fc.option(fc.tuple(fc.option(score), fc.option(score), fc.option(score)), { freq: 3 })),
  ),
  work: fc.tuple(
    ...[0, 1, 2].map(() =>
      fc.option(fc.record({ amount: fc.integer({ min: 1, max: 1_000 }), guardian: fc.integer({ min: -1, max: 1 }) }), {
        freq: 4,
      }),
    ),
  ),
  finalize: fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()),
  slash: fc.option(fc.record({ node: fc.nat(7), bps: fc.integer({ min: 0, max: 1_000 }), jail: fc.boolean() }), {
    freq: 2,
  }),
  emission: fc.option(fc.integer({ min: 0, max: 200_000 }), { freq: 4 }),
  claims: fc.array(fc.record({ node: fc.nat(7), back: fc.nat(2) }), { maxLength: 4 }),
  withdrawals: fc.array(fc.record({ node: fc.nat(7), staker: fc.nat(3) }), { maxLength: 4 }),
});

// ---------------------------------------------------------------- the world: chain and model side by side

type Fixture = Awaited<ReturnType<typeof rewardsDoubleFixture>>;

class World {
  readonly nodes: HardhatEthersSigner[];
  readonly roles: NodeRole[];
  readonly model: NodeRewardsModel[];
  readonly jails: JailModel[];
  readonly jailedUntil: bigint[];
  readonly commission: { from: bigint; bps: bigint }[][];
  readonly stakers: HardhatEthersSigner[][];
  // per epoch
  readonly terms = new Map<bigint, EpochTerms>();
  fixedUntil: bigint;
  readonly work = new Map<string, bigint>(); // `${node}/${epoch}`
  readonly epochWork = new Map<bigint, bigint>();
  readonly guardianWork = new Map<string, bigint>();
  readonly epochGuardianWork = new Map<bigint, bigint>();
  readonly scores = new Map<string, { watchdog: string; score: number }[]>();
  readonly quality = new Map<string, number>(); // finalized from a quorum
  readonly credits = new Map<string, bigint>(); // `${watchdog}/${epoch}`
  readonly epochCredits = new Map<bigint, bigint>();
  emission = 100_000n * TOKEN;
  readonly split = { edgeBps: 7_000n, watchdogBps: 1_500n, guardianBps: 1_500n };
  // accounting
  readonly claimedPerEpoch = new Map<bigint, bigint>();
  readonly flows = new Map<string, bigint>(); // address => expected token balance change
  withdrawn = 0n;
  claimed = 0n;

  constructor(
    readonly f: Fixture,
    readonly base: bigint,
    readonly genesis: bigint,
  ) {
    this.nodes = [...f.edges, ...f.watchdogs, ...f.guardians];
    this.roles = [
      ...f.edges.map(() => NodeRole.Edge),
      ...f.watchdogs.map(() => NodeRole.Watchdog),
      ...f.guardians.map(() => NodeRole.Guardian),
    ];
    const commissions = [...f.edgeCommissions, 1_000, 1_000, 1_000, 300, 300];
    this.model = this.nodes.map((n) => {
      const m = new NodeRewardsModel(n.address, base);
      m.bond(n.address, NODE_STAKE);
      return m;
    });
    this.jails = this.nodes.map(() => new JailModel());
    this.jailedUntil = this.nodes.map(() => 0n);
    this.commission = commissions.map((bps) => [{ from: base, bps: BigInt(bps) }]);
    this.stakers = this.nodes.map((n) => [n, ...f.delegators]);
    this.fixedUntil = base;
  }

  start(epoch: bigint): bigint {
    return this.genesis + epoch * EPOCH_LENGTH;
  }

  epochAt(timestamp: bigint): bigint {
    return (timestamp - this.genesis) / EPOCH_LENGTH;
  }

  creditDeadline(epoch: bigint): bigint {
    return this.start(epoch + 1n) + 600n;
  }

  flow(address: string, amount: bigint): void {
    this.flows.set(address, (this.flows.get(address) ?? 0n) + amount);
  }

  commissionAt(node: number, epoch: bigint): bigint {
    let bps = 0n;
    for (const c of this.commission[node]) if (c.from <= epoch) bps = c.bps;
    return bps;
  }

  active(node: number, at: bigint): boolean {
    return (
      this.jailedUntil[node] <= at && this.model[node].stakeOf(this.nodes[node].address) >= MIN_STAKE[this.roles[node]]
    );
  }

  /** Quality of an edge node in an epoch; finalizing it (and crediting, before the credit deadline) if not yet. */
  finalizeQuality(node: number, epoch: bigint, at: bigint): number {
    const key = `${this.nodes[node].address}/${epoch}`;
    const stored = this.quality.get(key);
    if (stored !== undefined) return stored;
    const scores = this.scores.get(key) ?? [];
    const result = finalizeQuality(scores, QUALITY_RULES, at < this.creditDeadline(epoch));
    if (scores.length >= QUALITY_RULES.quorum) {
      this.quality.set(key, result.quality);
      for (const w of result.credited) {
        const k = `${w}/${epoch}`;
        this.credits.set(k, (this.credits.get(k) ?? 0n) + 1n);
      }
      this.epochCredits.set(epoch, (this.epochCredits.get(epoch) ?? 0n) + BigInt(result.credited.length));
    }
    return result.quality;
  }

  /** The model's claim of `node` through `through` at time `at`: per epoch reward and commission. */
  claim(node: number, through: bigint, at: bigint): { reward: bigint; commission: bigint; rewardPerShare: bigint } {
    for (let e = this.fixedUntil; e <= through; e++) this.terms.set(e, { emission: this.emission, ...this.split });
    if (through >= this.fixedUntil) this.fixedUntil = through + 1n;
    const m = this.model[node];
    const address = this.nodes[node].address;
    const perEpoch: { reward: bigint; commissionBps: bigint }[] = [];
    for (let e = m.nextEpoch; e <= through; e++) {
      const terms = this.terms.get(e)!;
      let reward = 0n;
      const jailed = this.jails[node].wasJailedIn(e);
      if (this.roles[node] === NodeRole.Edge) {
        const work = this.work.get(`${address}/${e}`) ?? 0n;
        if (work !== 0n && !jailed) {
          const quality = this.finalizeQuality(node, e, at);
          reward = edgeReward(terms, work, this.epochWork.get(e)!, BigInt(quality));
        }
      } else if (this.roles[node] === NodeRole.Watchdog) {
        const credits = this.credits.get(`${address}/${e}`) ?? 0n;
        if (credits !== 0n && !jailed) reward = watchdogReward(terms, credits, this.epochCredits.get(e)!);
      } else {
        const work = this.guardianWork.get(`${address}/${e}`) ?? 0n;
        if (work !== 0n && !jailed) reward = guardianReward(terms, work, this.epochGuardianWork.get(e)!);
      }
      perEpoch.push({ reward, commissionBps: this.commissionAt(node, e) });
      this.claimedPerEpoch.set(e, (this.claimedPerEpoch.get(e) ?? 0n) + reward);
    }
    const { reward, commission } = m.claim(through, perEpoch);
    this.claimed += reward;
    return { reward, commission, rewardPerShare: m.rewardPerShare };
  }
}

async function receiptOf(tx: Promise<ContractTransactionResponse>): Promise<ContractTransactionReceipt> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("receiptOf: expected a receipt");
  return receipt;
}

async function timestampOf(receipt: ContractTransactionReceipt): Promise<bigint> {
  const block = await ethers.provider.getBlock(receipt.blockNumber);
  if (!block) throw new Error(`timestampOf: expected block ${receipt.blockNumber}`);
  return BigInt(block.timestamp);
}

function eventArgs(receipt: ContractTransactionReceipt, name: string): EventLog["args"] {
  const log = receipt.logs.find((l): l is EventLog => "fragment" in l && l.fragment.name === name);
  if (!log) throw new Error(`eventArgs: no ${name} event`);
  return log.args;
}

// ---------------------------------------------------------------- running a program

async function claimAndCheck(w: World, node: number, through: bigint): Promise<void> {
  const { distributor } = w.f;
  const receipt = await receiptOf(distributor.claim(w.nodes[node].address, through));
  const expected = w.claim(node, through, await timestampOf(receipt));
  const args = eventArgs(receipt, "RewardsClaimed");
  expect([args.reward, args.commission, args.rewardPerShare], `claim of node ${node} through ${through}`).to.deep.equal(
    [expected.reward, expected.commission, expected.rewardPerShare],
  );
}

async function withdrawAndCheck(w: World, node: number, staker: number): Promise<void> {
  const { distributor } = w.f;
  const signer = w.stakers[node][staker];
  const nodeAddress = w.nodes[node].address;
  const expected = w.model[node].pending(signer.address);
  if (expected === 0n) {
    await expect(distributor.connect(signer).withdrawRewards(nodeAddress))
      .to.be.revertedWithCustomError(distributor, "RewardsNothingToWithdraw")
      .withArgs(nodeAddress, signer.address);
    return;
  }
  const receipt = await receiptOf(distributor.connect(signer).withdrawRewards(nodeAddress));
  expect(eventArgs(receipt, "RewardsWithdrawn").amount, `withdrawal of staker ${staker} in node ${node}`).to.equal(
    expected,
  );
  w.model[node].withdraw(signer.address);
  w.withdrawn += expected;
  w.flow(signer.address, expected);
}

async function checkPending(w: World): Promise<void> {
  for (let n = 0; n < w.nodes.length; n++) {
    for (const staker of w.stakers[n]) {
      expect(
        await w.f.distributor.pendingRewards(w.nodes[n].address, staker.address),
        `pending of ${staker.address} in node ${n}`,
      ).to.equal(w.model[n].pending(staker.address));
    }
  }
}

async function runEpoch(w: World, epoch: bigint, plan: EpochPlan, previous: EpochPlan | undefined): Promise<void> {
  const { registry, oracle, double, distributor, parameters, governance, slasher, delegators } = w.f;
  const edges = w.nodes.slice(0, 3);

  // Phase A: stake moves and scores.
  const phaseA = w.start(epoch) + PHASE_A;
  await moveTo(phaseA);
  for (const op of plan.ops) {
    const node = op.node;
    const operator = w.nodes[node];
    const d = delegators[op.delegator];
    if (op.kind === "delegate") {
      if (!w.active(node, phaseA)) continue;
      const amount = BigInt(op.amount) * TOKEN;
      await receiptOf(registry.connect(d).delegate(operator.address, amount));
      w.model[node].bond(d.address, amount);
      w.flow(d.address, -amount);
      w.flow(await registry.getAddress(), amount);
    } else if (op.kind === "unbond") {
      const stake = w.model[node].stakeOf(d.address);
      const amount = (stake * BigInt((op.amount % 100) + 1)) / 100n;
      if (amount === 0n) continue;
      await receiptOf(registry.connect(d).unbond(operator.address, amount));
      w.model[node].unbond(d.address, amount);
    } else {
      const bps = BigInt(op.amount % 2_001);
      await receiptOf(registry.connect(operator).setCommission(bps));
      const history = w.commission[node];
      if (history[history.length - 1].from === epoch + 1n) history[history.length - 1].bps = bps;
      else history.push({ from: epoch + 1n, bps });
    }
  }
  for (let i = 0; i < 3; i++) {
    const row = plan.scores[i];
    const watchdog = 3 + i;
    if (!row || !w.active(watchdog, phaseA)) continue;
    const nodes = edges.filter((_, j) => row[j] !== null).map((e) => e.address);
    const scores = row.filter((s): s is number => s !== null);
    if (nodes.length === 0) continue;
    await receiptOf(oracle.connect(w.nodes[watchdog]).postScores(epoch, nodes, scores));
    nodes.forEach((node, j) => {
      const key = `${node}/${epoch}`;
      w.scores.set(key, [...(w.scores.get(key) ?? []), { watchdog: w.nodes[watchdog].address, score: scores[j] }]);
    });
  }

  // Phase B: this epoch's work, the previous epoch's finalizations, governance, a slash, claims, withdrawals.
  await moveTo(w.start(epoch) + PHASE_B);
  for (let i = 0; i < 3; i++) {
    const work = plan.work[i];
    if (!work) continue;
    const guardian = work.guardian < 0 ? ethers.ZeroAddress : w.nodes[6 + work.guardian].address;
    const amount = BigInt(work.amount);
    await receiptOf(double.settle(epoch, edges[i].address, amount, guardian));
    w.work.set(`${edges[i].address}/${epoch}`, amount);
    w.epochWork.set(epoch, (w.epochWork.get(epoch) ?? 0n) + amount);
    if (work.guardian >= 0) {
      const key = `${guardian}/${epoch}`;
      w.guardianWork.set(key, (w.guardianWork.get(key) ?? 0n) + amount);
      w.epochGuardianWork.set(epoch, (w.epochGuardianWork.get(epoch) ?? 0n) + amount);
    }
  }
  if (previous) {
    for (let i = 0; i < 3; i++) {
      if (!previous.finalize[i]) continue;
      const receipt = await receiptOf(oracle.finalize(epoch - 1n, edges[i].address));
      w.finalizeQuality(i, epoch - 1n, await timestampOf(receipt));
    }
  }
  if (plan.emission !== null) {
    w.emission = BigInt(plan.emission) * TOKEN;
    await setParameter(parameters, governance, "EmissionPerEpoch", w.emission);
  }
  if (plan.slash) {
    const { node, bps, jail } = plan.slash;
    const receipt = await receiptOf(registry.connect(slasher).slash(w.nodes[node].address, bps, jail));
    const args = eventArgs(receipt, "NodeSlashed");
    const before = w.model[node].tokens;
    w.model[node].slash(BigInt(bps));
    expect(args.bonded, "bonded tokens slashed").to.equal(before - w.model[node].tokens);
    const slashed = BigInt(args.bonded) + BigInt(args.unbonding);
    w.flow(slasher.address, slashed);
    w.flow(await registry.getAddress(), -slashed);
    if (jail) {
      const at = await timestampOf(receipt);
      w.jailedUntil[node] = at + JAIL_PERIOD;
      w.jails[node].record(w.epochAt(at), w.epochAt(at + JAIL_PERIOD - 1n));
    }
  }
  for (const c of plan.claims) {
    // Edge and guardian epochs are final one settlement window after they end; watchdog credits a window later.
    const latest = (w.roles[c.node] === NodeRole.Watchdog ? epoch - 2n : epoch - 1n) - BigInt(c.back);
    if (latest < w.model[c.node].nextEpoch) continue;
    await claimAndCheck(w, c.node, latest);
  }
  for (const x of plan.withdrawals) await withdrawAndCheck(w, x.node, x.staker);
  await checkPending(w);
  expect(await distributor.fixedUntil()).to.equal(w.fixedUntil);
}

async function runProgram(plans: EpochPlan[]): Promise<void> {
  const f = await loadFixture(rewardsDoubleFixture);
  const { token, rewardPool, registry, parameters, distributor, slasher } = f;
  const base = await parameters.currentEpoch();
  const w = new World(f, base, await parameters.genesis());
  const watched = [
    await rewardPool.getAddress(),
    await registry.getAddress(),
    slasher.address,
    ...w.nodes.map((n) => n.address),
    ...f.delegators.map((d) => d.address),
  ];
  const before = await Promise.all(watched.map((a) => token.balanceOf(a)));

  for (let i = 0; i < plans.length; i++) await runEpoch(w, base + BigInt(i), plans[i], plans[i - 1]);

  // Settle everything: every epoch final and its credits too; claim every node through the last epoch, withdraw all.
  const last = base + BigInt(plans.length - 1);
  await moveTo(w.start(last + 1n) + 700n);
  for (let n = 0; n < w.nodes.length; n++) if (w.model[n].nextEpoch <= last) await claimAndCheck(w, n, last);
  for (let n = 0; n < w.nodes.length; n++)
    for (let s = 0; s < 4; s++) if (w.model[n].pending(w.stakers[n][s].address) !== 0n) await withdrawAndCheck(w, n, s);
  await checkPending(w);

  // Nothing claimable for an epoch exceeds its emission, nor any role's share of it.
  for (const [epoch, claimed] of w.claimedPerEpoch) {
    const terms = w.terms.get(epoch)!;
    expect(claimed, `claimed for epoch ${epoch}`).to.be.at.most(terms.emission);
    expect(await distributor.termsOf(epoch)).to.deep.equal([terms.emission, 7_000n, 1_500n, 1_500n, 2_000n, true]);
  }
  expect(w.withdrawn).to.be.at.most(w.claimed);
  // Tokens conserved: the pool paid exactly what stakers withdrew; the registry and the slasher moved what the
  // stakes and slashes say; nothing else moved.
  w.flow(await rewardPool.getAddress(), -w.withdrawn);
  const after = await Promise.all(watched.map((a) => token.balanceOf(a)));
  for (let i = 0; i < watched.length; i++) {
    expect(after[i] - before[i], `balance change of ${watched[i]}`).to.equal(w.flows.get(watched[i]) ?? 0n);
  }
  const totalEmission = [...w.terms.values()].reduce((sum, t) => sum + t.emission, 0n);
  expect(w.claimed).to.be.at.most(totalEmission);
  // Per role, per epoch: the sum of rewards stays within the role's pool.
  for (const [epoch, terms] of w.terms) {
    let edges = 0n;
    for (let n = 0; n < 3; n++) {
      const work = w.work.get(`${w.nodes[n].address}/${epoch}`) ?? 0n;
      if (work !== 0n) edges += edgeReward(terms, work, w.epochWork.get(epoch)!, 10_000n);
    }
    expect(edges).to.be.at.most(poolOf(terms.emission, terms.edgeBps));
    const pools =
      poolOf(terms.emission, terms.edgeBps) +
      poolOf(terms.emission, terms.watchdogBps) +
      poolOf(terms.emission, terms.guardianBps);
    expect(pools).to.be.at.most(terms.emission);
  }
}

describe("RewardDistributor properties", function () {
  this.timeout(1_200_000);

  it("pays every staker what the model says, to the wei, over random epochs of stake, work, scores, slashes and claims", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(epochPlan, { minLength: 2, maxLength: 4 }), async (plans) => {
        await runProgram(plans);
      }),
      runParameters(Number(process.env.FC_RUNS ?? 25)),
    );
  });
});
