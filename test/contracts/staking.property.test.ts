import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import type { ContractTransactionReceipt, ContractTransactionResponse } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { impersonateAccount, loadFixture, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import type { NodeRegistry } from "../../typechain-types";
import type { INodeRegistry } from "../../typechain-types/contracts/staking/NodeRegistry";

/**
 * Property tests of the node registry's token accounting and slashing, against a small TypeScript model of
 * SharePool's rounding. A failure prints fast-check's seed and path; replay it with
 * `FC_SEED=<seed> FC_PATH=<path> npx hardhat test test/contracts/staking.property.test.ts`.
 */

const FUNDING = 200_000n * TOKEN;
const BPS = 10_000n;
const PPM = 1_000_000n;
const MAX_UNBONDINGS = 32;

/** fast-check settings: the seed and path of a failure to replay, if given. */
function runParameters(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED;
  return seed === undefined ? { numRuns } : { numRuns, seed: Number(seed), path: process.env.FC_PATH };
}

/** Three operators, three delegators and a slasher set by governance; every participant funded and approved. */
async function propertyFixture() {
  const base = await deployProtocolFixture();
  const { token, registry, timelock, signers } = base;
  const operators = signers.slice(1, 4);
  const delegators = signers.slice(4, 7);
  const slasher = signers[7];
  const registryAddress = await registry.getAddress();
  for (const participant of [...operators, ...delegators]) {
    await (await token.transfer(participant.address, FUNDING)).wait();
    await (await token.connect(participant).approve(registryAddress, ethers.MaxUint256)).wait();
  }
  const timelockAddress = await timelock.getAddress();
  await impersonateAccount(timelockAddress);
  await setBalance(timelockAddress, ethers.parseEther("10"));
  await (await registry.connect(await ethers.getSigner(timelockAddress)).setSlasher(slasher.address)).wait();
  return { ...base, operators, delegators, slasher };
}

type Fixture = Awaited<ReturnType<typeof propertyFixture>>;

// ---------------------------------------------------------------- a model of SharePool's rounding

interface PoolState {
  held: bigint;
  shares: bigint;
  tokens: bigint;
}

const mulDivDown = (a: bigint, b: bigint, c: bigint): bigint => (a * b) / c;
const mulDivUp = (a: bigint, b: bigint, c: bigint): bigint => (a * b + c - 1n) / c;

/** SharePool.value */
function valueOf(pool: PoolState, shares: bigint): bigint {
  if (shares === 0n) return 0n;
  return shares === pool.shares ? pool.tokens : mulDivDown(shares, pool.tokens, pool.shares);
}

/** The operator's self-stake after `stake(amount)`: SharePool.deposit, then SharePool.value. */
function selfStakeAfterDeposit(pool: PoolState, amount: bigint): bigint {
  const minted = pool.shares === 0n || pool.tokens === 0n ? amount : mulDivDown(amount, pool.shares, pool.tokens);
  return valueOf({ held: 0n, shares: pool.shares + minted, tokens: pool.tokens + amount }, pool.held + minted);
}

/** The operator's self-stake after `unbond(amount)`: NodeRegistry.unbond's share rounding, then SharePool.redeem. */
function selfStakeAfterUnbond(pool: PoolState, amount: bigint): bigint {
  const available = valueOf(pool, pool.held);
  let burnt = amount === available ? pool.held : mulDivUp(amount, pool.shares, pool.tokens);
  if (burnt > pool.held) burnt = pool.held;
  const paid = burnt === pool.shares ? pool.tokens : mulDivDown(burnt, pool.tokens, pool.shares);
  return valueOf({ held: 0n, shares: pool.shares - burnt, tokens: pool.tokens - paid }, pool.held - burnt);
}

/** A copy of an `unbondings()` entry that can be passed back to the contract (ethers' results are frozen). */
function asEntry(entry: INodeRegistry.UnbondingStructOutput): INodeRegistry.UnbondingStruct {
  return { operator: entry.operator, releaseTime: entry.releaseTime, shares: entry.shares };
}

async function bondedPool(registry: NodeRegistry, operator: string, staker: string): Promise<PoolState> {
  const [held, shares, tokens] = await registry.sharesOf(operator, staker);
  return { held, shares, tokens };
}

// ---------------------------------------------------------------- actions

type Action =
  | { kind: "register"; op: number; role: NodeRole; extra: bigint; commission: number; wait: number }
  | { kind: "stake"; op: number; amount: bigint | "missing"; wait: number }
  | { kind: "delegate"; delegator: number; op: number; amount: bigint; wait: number }
  | { kind: "unbond"; staker: number; op: number; ppm: bigint | "toMinimum"; wait: number }
  | { kind: "withdraw"; staker: number; wait: number }
  | { kind: "slash"; op: number; bps: number; jail: boolean; wait: number };

/** From a single wei to thousands of tokens, so that both rounding and the role minimums come into play. */
const amountArb = fc.oneof(
  { weight: 1, arbitrary: fc.bigInt({ min: 1n, max: 1_000n }) },
  { weight: 4, arbitrary: fc.bigInt({ min: 1n, max: 3_000n * TOKEN }) },
);
const operatorArb = fc.integer({ min: 0, max: 2 });
const stakerArb = fc.integer({ min: 0, max: 5 }); // 0-2 the operators, 3-5 the delegators
/** Seconds to let pass before the action: often none, sometimes past an unbonding (300 s) or a jail (600 s). */
const waitArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 700 }));

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("register" as const),
      op: operatorArb,
      role: fc.constantFrom(NodeRole.Edge, NodeRole.Watchdog, NodeRole.Guardian),
      extra: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 2_000n * TOKEN })),
      commission: fc.integer({ min: 0, max: 2_000 }),
      wait: waitArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("stake" as const),
      // "missing": exactly what an operator under its minimum lacks, the amount StakingInsufficientStake names.
      op: operatorArb,
      amount: fc.oneof(amountArb, fc.constant("missing" as const)),
      wait: waitArb,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("delegate" as const),
      delegator: fc.integer({ min: 0, max: 2 }),
      op: operatorArb,
      amount: amountArb,
      wait: waitArb,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("unbond" as const),
      staker: stakerArb,
      op: operatorArb,
      // "toMinimum": an operator unbonds all but its role minimum, the boundary where share rounding bites.
      ppm: fc.oneof(fc.constant(PPM), fc.bigInt({ min: 1n, max: PPM }), fc.constant("toMinimum" as const)),
      wait: waitArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("withdraw" as const), staker: stakerArb, wait: waitArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("slash" as const),
      op: operatorArb,
      bps: fc.integer({ min: 0, max: 5_000 }),
      jail: fc.boolean(),
      wait: waitArb,
    }),
  },
);

/** Sends `send()` and expects it to revert with `error`, or to succeed when `error` is undefined. */
async function expectOutcome(
  registry: NodeRegistry,
  send: () => Promise<ContractTransactionResponse>,
  error: string | undefined,
): Promise<ContractTransactionReceipt | undefined> {
  if (error !== undefined) {
    await expect(send()).to.be.revertedWithCustomError(registry, error);
    return undefined;
  }
  const receipt = await (await send()).wait();
  if (!receipt) throw new Error("expectOutcome: expected a receipt");
  return receipt;
}

/** The first event called `name` that the registry emitted in `receipt`. */
function eventArgs(registry: NodeRegistry, receipt: ContractTransactionReceipt, name: string) {
  for (const log of receipt.logs) {
    const parsed = registry.interface.parseLog(log);
    if (parsed?.name === name) return parsed.args;
  }
  throw new Error(`eventArgs: expected a ${name} event`);
}

/** What the test knows about one participant's tokens: what it put in, took out and lost to slashes. */
interface Ledger {
  putIn: bigint;
  withdrawn: bigint;
  slashed: bigint;
}

/** Runs one random sequence and checks the custody invariants after every step. */
class Run {
  readonly participants: HardhatEthersSigner[];
  readonly ledgers: Ledger[];
  /** Pool operations so far: each leaves under a wei of rounding dust that may end with any holder. */
  poolOperations = 0n;
  slashedTotal = 0n;

  constructor(
    private readonly f: Fixture,
    private readonly total: bigint,
  ) {
    this.participants = [...f.operators, ...f.delegators];
    this.ledgers = this.participants.map(() => ({ putIn: 0n, withdrawn: 0n, slashed: 0n }));
  }

  get registry(): NodeRegistry {
    return this.f.registry;
  }

  async minimum(op: string): Promise<bigint> {
    const role = await this.registry.roleOf(op);
    return role === BigInt(NodeRole.None) ? 0n : this.f.parameters.minStake(role);
  }

  /** NodeRegistry.isActive at the timestamp `at` of the next block. */
  async activeAt(op: string, at: number): Promise<boolean> {
    const view = await this.registry.node(op);
    if (view.role === BigInt(NodeRole.None) || view.jailedUntil > BigInt(at)) return false;
    return view.selfStake >= (await this.minimum(op));
  }

  /** Every token of a participant in `op`'s node now: bonded stake plus unbonding entries. */
  async holdingIn(op: string, staker: string): Promise<bigint> {
    let sum = await this.registry.stakeOf(op, staker);
    for (const entry of await this.registry.unbondings(staker)) {
      if (entry.operator === op) sum += await this.registry.unbondingValue(asEntry(entry));
    }
    return sum;
  }

  async step(action: Action): Promise<void> {
    const { registry, f } = this;
    const at = (await time.latest()) + 1 + action.wait;
    await time.setNextBlockTimestamp(at);

    switch (action.kind) {
      case "register": {
        const operator = f.operators[action.op];
        const amount = (await f.parameters.minStake(action.role)) + action.extra;
        const registered = (await registry.roleOf(operator.address)) !== BigInt(NodeRole.None);
        const receipt = await expectOutcome(
          registry,
          () =>
            registry
              .connect(operator)
              .register(
                action.role,
                `peer-${action.op}`,
                [`/ip4/10.0.0.${action.op}/tcp/4001`],
                operator.address,
                action.commission,
                amount,
              ),
          registered ? "StakingAlreadyRegistered" : undefined,
        );
        if (receipt) {
          this.ledgers[action.op].putIn += amount;
          this.poolOperations += 1n;
        }
        break;
      }
      case "stake": {
        const operator = f.operators[action.op].address;
        let error: string | undefined;
        let amount = action.amount === "missing" ? 1n : action.amount;
        if ((await registry.roleOf(operator)) === BigInt(NodeRole.None)) error = "StakingNotRegistered";
        else {
          const pool = await bondedPool(registry, operator, operator);
          const minimum = await this.minimum(operator);
          if (action.amount === "missing" && valueOf(pool, pool.held) < minimum)
            amount = minimum - valueOf(pool, pool.held);
          if (selfStakeAfterDeposit(pool, amount) < minimum) error = "StakingInsufficientStake";
        }
        const receipt = await expectOutcome(
          registry,
          () => registry.connect(f.operators[action.op]).stake(amount),
          error,
        );
        if (receipt) {
          this.ledgers[action.op].putIn += amount;
          this.poolOperations += 1n;
          expect(await registry.stakeOf(operator, operator)).to.be.greaterThanOrEqual(await this.minimum(operator));
        }
        break;
      }
      case "delegate": {
        const delegator = f.delegators[action.delegator];
        const operator = f.operators[action.op].address;
        let error: string | undefined;
        if ((await registry.roleOf(operator)) === BigInt(NodeRole.None)) error = "StakingNotRegistered";
        else if (!(await this.activeAt(operator, at))) error = "StakingNodeNotActive";
        const receipt = await expectOutcome(
          registry,
          () => registry.connect(delegator).delegate(operator, action.amount),
          error,
        );
        if (receipt) {
          this.ledgers[3 + action.delegator].putIn += action.amount;
          this.poolOperations += 1n;
        }
        break;
      }
      case "unbond": {
        const staker = this.participants[action.staker];
        const operator = f.operators[action.op].address;
        let error: string | undefined;
        let amount = 1n;
        if ((await registry.roleOf(operator)) === BigInt(NodeRole.None)) error = "StakingNotRegistered";
        else {
          const pool = await bondedPool(registry, operator, staker.address);
          const available = valueOf(pool, pool.held);
          const minimum = await this.minimum(operator);
          if (action.ppm === "toMinimum") amount = available > minimum ? available - minimum : available;
          else amount = (available * action.ppm) / PPM;
          if (amount === 0n) amount = 1n;
          if (amount > available) error = "StakingExceedsStake";
          else if ((await registry.unbondings(staker.address)).length >= MAX_UNBONDINGS)
            error = "StakingTooManyUnbondings";
          else if (staker.address === operator) {
            const remaining = selfStakeAfterUnbond(pool, amount);
            if (remaining !== 0n && remaining < minimum) error = "StakingBelowMinimum";
          }
        }
        const receipt = await expectOutcome(registry, () => registry.connect(staker).unbond(operator, amount), error);
        if (receipt) {
          const started = eventArgs(registry, receipt, "UnbondingStarted");
          expect(started.amount).to.be.greaterThanOrEqual(amount);
          this.poolOperations += 2n;
          if (staker.address === operator) {
            const left = await registry.stakeOf(operator, operator);
            expect(
              left === 0n || left >= (await this.minimum(operator)),
              "an operator keeps its minimum or leaves",
            ).to.equal(true);
          }
        }
        break;
      }
      case "withdraw": {
        const staker = this.participants[action.staker];
        const entries = await registry.unbondings(staker.address);
        const matured = entries.filter((entry) => entry.releaseTime <= BigInt(at));
        let worth = 0n;
        for (const entry of matured) worth += await registry.unbondingValue(asEntry(entry));
        const before = await f.token.balanceOf(staker.address);
        const receipt = await expectOutcome(
          registry,
          () => registry.connect(staker).withdraw(),
          matured.length === 0 ? "StakingNothingToWithdraw" : undefined,
        );
        if (receipt) {
          const { amount, count } = eventArgs(registry, receipt, "Withdrawn");
          expect(count).to.equal(BigInt(matured.length));
          expect((await f.token.balanceOf(staker.address)) - before).to.equal(amount);
          // Entries redeemed one after another only gain from each other's rounding; never more than the dust.
          expect(amount).to.be.greaterThanOrEqual(worth);
          expect(amount - worth).to.be.lessThanOrEqual(this.poolOperations);
          expect(await registry.unbondings(staker.address)).to.have.length(entries.length - matured.length);
          this.ledgers[action.staker].withdrawn += amount;
          this.poolOperations += BigInt(matured.length);
          await this.checkLedger(action.staker);
        }
        break;
      }
      case "slash": {
        const operator = f.operators[action.op].address;
        const registered = (await registry.roleOf(operator)) !== BigInt(NodeRole.None);
        const before = registered
          ? await Promise.all(this.participants.map((p) => this.holdingIn(operator, p.address)))
          : [];
        const slasherBefore = await f.token.balanceOf(f.slasher.address);
        const receipt = await expectOutcome(
          registry,
          () => registry.connect(f.slasher).slash(operator, action.bps, action.jail),
          registered ? undefined : "StakingNotRegistered",
        );
        if (receipt) {
          const { bonded, unbonding } = eventArgs(registry, receipt, "NodeSlashed");
          expect((await f.token.balanceOf(f.slasher.address)) - slasherBefore).to.equal(bonded + unbonding);
          this.slashedTotal += bonded + unbonding;
          this.poolOperations += 2n;
          const after = await Promise.all(this.participants.map((p) => this.holdingIn(operator, p.address)));
          for (let i = 0; i < this.participants.length; i++) {
            expect(after[i], "a slash never raises a holding").to.be.lessThanOrEqual(before[i]);
            this.ledgers[i].slashed += before[i] - after[i];
          }
        }
        break;
      }
    }
    await this.checkCustody();
  }

  /** The registry holds exactly the nodes' pools; no token appears or vanishes; a share is never worth over a wei. */
  async checkCustody(): Promise<void> {
    const { registry, f } = this;
    const operators = f.operators.map((o) => o.address);
    const [views, pools, balances, registryBalance, slasherBalance] = await Promise.all([
      Promise.all(operators.map((op) => registry.node(op))),
      Promise.all(operators.map((op) => registry.sharesOf(op, op))),
      Promise.all(this.participants.map((p) => f.token.balanceOf(p.address))),
      f.token.balanceOf(registry),
      f.token.balanceOf(f.slasher.address),
    ]);
    const pooled = views.reduce((sum, v) => sum + v.selfStake + v.delegatedStake + v.unbondingStake, 0n);
    expect(registryBalance, "registry balance == sum of the nodes' bonded and unbonding pools").to.equal(pooled);
    const held = balances.reduce((sum, b) => sum + b, 0n);
    expect(held + registryBalance + slasherBalance, "tokens are conserved").to.equal(this.total);
    expect(slasherBalance, "the slasher holds exactly what was slashed").to.equal(this.slashedTotal);
    const putIn = this.ledgers.reduce((sum, l) => sum + l.putIn, 0n);
    const withdrawn = this.ledgers.reduce((sum, l) => sum + l.withdrawn, 0n);
    expect(withdrawn + registryBalance, "everything put in is withdrawn, still held or slashed").to.equal(
      putIn - this.slashedTotal,
    );
    for (const [, totalShares, totalTokens] of pools) {
      expect(totalTokens, "a bonded share is never worth more than a wei").to.be.lessThanOrEqual(totalShares);
    }
  }

  /**
   * A participant never gets out more than it put in minus what slashes took from it, up to the rounding dust of
   * every pool operation so far (the last holder of a pool takes the dust others' rounding left behind).
   */
  async checkLedger(index: number): Promise<void> {
    const staker = this.participants[index].address;
    let holding = 0n;
    for (const operator of this.f.operators) holding += await this.holdingIn(operator.address, staker);
    const { putIn, withdrawn, slashed } = this.ledgers[index];
    expect(withdrawn + holding, `participant ${index} gained from the registry`).to.be.lessThanOrEqual(
      putIn - slashed + this.poolOperations,
    );
  }
}

/** Sequences open by registering one to three operators, so that most later actions find a node to act on. */
const opening: fc.Arbitrary<Action[]> = fc.uniqueArray(
  fc.record({
    kind: fc.constant("register" as const),
    op: operatorArb,
    role: fc.constantFrom(NodeRole.Edge, NodeRole.Watchdog, NodeRole.Guardian),
    extra: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 2_000n * TOKEN })),
    commission: fc.integer({ min: 0, max: 2_000 }),
    wait: fc.constant(0),
  }),
  { minLength: 1, maxLength: 3, selector: (action) => action.op },
);

describe("NodeRegistry properties", () => {
  it("conserves tokens through random register, stake, delegate, unbond, withdraw and slash sequences", async () => {
    await fc.assert(
      fc.asyncProperty(
        opening,
        fc.array(actionArb, { minLength: 5, maxLength: 25, size: "max" }),
        async (first, actions) => {
          const f = await loadFixture(propertyFixture);
          const participants = [...f.operators, ...f.delegators, f.slasher];
          const balances = await Promise.all(participants.map((p) => f.token.balanceOf(p.address)));
          const total = balances.reduce((sum, b) => sum + b, 0n) + (await f.token.balanceOf(f.registry));
          const run = new Run(f, total);
          await run.checkCustody();
          for (const action of [...first, ...actions]) await run.step(action);
          for (let i = 0; i < run.participants.length; i++) await run.checkLedger(i);
        },
      ),
      runParameters(100),
    );
  });

  // Why 1 wei: with s the holder's shares, S and T the pool's shares and tokens, x = s*T/S its exact value and
  // b = bps/10000, SharePool gives before = floor(x) and, after cut() took floor(T*b), after = floor(s*T'/S) with
  // T' = T - floor(T*b), so after is in [x(1-b) - 1, x(1-b) + s/S) and before in (x - 1, x]. The loss
  // before - after then differs from before*b by less than 2, and from floor(before*b) by at most 1.
  it("cuts every holder's bonded and unbonding stake by floor(stake * bps / 10000) within 1 wei", async () => {
    const delegation = fc.oneof(fc.bigInt({ min: 1n, max: 1_000n }), fc.bigInt({ min: 1n, max: 10_000n * TOKEN }));
    const scenario = fc.record({
      selfExtra: fc.bigInt({ min: 0n, max: 5_000n * TOKEN }),
      early: fc.array(fc.option(delegation, { nil: undefined }), { minLength: 3, maxLength: 3 }),
      preBps: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 })),
      late: fc.array(fc.option(delegation, { nil: undefined }), { minLength: 3, maxLength: 3 }),
      unbondPpm: fc.array(fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: PPM })), { minLength: 3, maxLength: 3 }),
      bps: fc.integer({ min: 1, max: 5_000 }),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const f = await loadFixture(propertyFixture);
        const { registry, slasher } = f;
        const [operator] = f.operators;
        const op = operator.address;
        // Twice the minimum, so that the node stays active (open to delegation) after a slash of up to half.
        const minimum = await f.parameters.minStake(NodeRole.Edge);
        await (
          await registry
            .connect(operator)
            .register(NodeRole.Edge, "peer", ["/ip4/10.0.0.1/tcp/4001"], op, 0, 2n * minimum + s.selfExtra)
        ).wait();
        for (let i = 0; i < 3; i++) {
          const amount = s.early[i];
          if (amount !== undefined) await (await registry.connect(f.delegators[i]).delegate(op, amount)).wait();
        }
        // A first slash makes the share price uneven, so that later deposits and redemptions round.
        if (s.preBps > 0) await (await registry.connect(slasher).slash(op, s.preBps, false)).wait();
        for (let i = 0; i < 3; i++) {
          const amount = s.late[i];
          if (amount !== undefined) await (await registry.connect(f.delegators[i]).delegate(op, amount)).wait();
        }
        for (let i = 0; i < 3; i++) {
          const stake = await registry.stakeOf(op, f.delegators[i].address);
          const amount = (stake * s.unbondPpm[i]) / PPM;
          if (amount > 0n) await (await registry.connect(f.delegators[i]).unbond(op, amount)).wait();
        }

        const holders = [operator, ...f.delegators].map((h) => h.address);
        const entriesOf = async (holder: string) => (await registry.unbondings(holder)).map(asEntry);
        const snapshot = async () =>
          Promise.all(
            holders.map(async (holder) => ({
              bonded: await registry.stakeOf(op, holder),
              unbonding: await Promise.all((await entriesOf(holder)).map((e) => registry.unbondingValue(e))),
            })),
          );
        const [, , bondedTokens] = await registry.sharesOf(op, op);
        const unbondingTokens = (await registry.node(op)).unbondingStake;
        const before = await snapshot();

        const receipt = await (await registry.connect(slasher).slash(op, s.bps, false)).wait();
        if (!receipt) throw new Error("expected a receipt");
        const after = await snapshot();
        const bps = BigInt(s.bps);
        const slashed = eventArgs(registry, receipt, "NodeSlashed");
        expect(slashed.bonded).to.equal((bondedTokens * bps) / BPS);
        expect(slashed.unbonding).to.equal((unbondingTokens * bps) / BPS);

        const withinOneWei = (was: bigint, now: bigint, what: string) => {
          const loss = was - now;
          const expected = (was * bps) / BPS;
          expect(
            loss >= expected - 1n && loss <= expected + 1n,
            `${what}: lost ${loss} of ${was}, expected ${expected} ± 1`,
          ).to.equal(true);
        };
        for (let h = 0; h < holders.length; h++) {
          withinOneWei(before[h].bonded, after[h].bonded, `holder ${h} bonded`);
          for (let e = 0; e < before[h].unbonding.length; e++) {
            withinOneWei(before[h].unbonding[e], after[h].unbonding[e], `holder ${h} unbonding entry ${e}`);
          }
        }
      }),
      runParameters(200),
    );
  });
});
