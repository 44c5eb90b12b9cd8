import { expect } from "chai";
import { ethers } from "hardhat";
import fc from "fast-check";
import type { ContractTransactionResponse } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import {
  BPS,
  conflictingStatements,
  mined,
  now,
  parameter,
  setParameter,
  slashingEvent,
  slashingFixture,
  type SlashingFixture,
} from "../fixtures/slashing";
import { TOKEN } from "../../sdk/chain/protocol";
import { messageHash, signAck, signStorePromise, type StorePromise } from "../../sdk/chain/slashing";

/**
 * Property tests of the slashing contract's token accounting: random sequences of challenges, answers, flags, votes,
 * resolutions, equivocation reports, unbonding and time. After every step no token has appeared or vanished, the
 * contract holds exactly the bonds of open challenges and the stakes of open flags, and every slash's tokens were
 * split between its reporter and the treasury to the wei. A failure prints fast-check's seed and path; replay it with
 * `FC_SEED=<seed> FC_PATH=<path> npx hardhat test test/contracts/slashing.property.test.ts`.
 */

const MESSAGES = 3;
const RUNS = Number(process.env.FC_RUNS ?? 40);

/** fast-check settings: the seed and path of a failure to replay, if given. */
function runParameters(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED;
  return seed === undefined ? { numRuns } : { numRuns, seed: Number(seed), path: process.env.FC_PATH };
}

type Action =
  | { kind: "challenge"; node: number; message: number; challenger: number }
  | { kind: "answerAck"; challenge: number }
  | { kind: "answerMessage"; challenge: number }
  | { kind: "resolveChallenge"; challenge: number }
  | { kind: "equivocate"; node: number; epoch: number; slot: number }
  | { kind: "flag"; flagger: number; node: number }
  | { kind: "vote"; flag: number; reviewer: number; slash: boolean }
  | { kind: "resolveFlag"; flag: number }
  | { kind: "unbond"; permille: number }
  | { kind: "wait"; seconds: number };

const node = fc.integer({ min: 0, max: 1 });
const message = fc.integer({ min: 0, max: MESSAGES - 1 });
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("challenge" as const),
      node,
      message,
      challenger: fc.integer({ min: 0, max: 2 }),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ kind: fc.constant("answerAck" as const), challenge: fc.nat(7) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant("answerMessage" as const), challenge: fc.nat(7) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant("resolveChallenge" as const), challenge: fc.nat(7) }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant("equivocate" as const),
      node: fc.integer({ min: 0, max: 6 }),
      epoch: fc.integer({ min: 0, max: 1 }),
      slot: fc.integer({ min: 0, max: 1 }),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("flag" as const), flagger: fc.integer({ min: 0, max: 4 }), node }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("vote" as const),
      flag: fc.nat(7),
      reviewer: fc.nat(4),
      slash: fc.boolean(),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant("resolveFlag" as const), flag: fc.nat(7) }), weight: 3 },
  {
    arbitrary: fc.record({ kind: fc.constant("unbond" as const), permille: fc.integer({ min: 1, max: 300 }) }),
    weight: 1,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("wait" as const), seconds: fc.integer({ min: 1, max: 200 }) }),
    weight: 3,
  },
);

/** The world the actions run in: two edge nodes (the first signs with a key of its own) and five watchdogs. */
interface World {
  f: SlashingFixture;
  edges: HardhatEthersSigner[];
  edgeSigners: HardhatEthersSigner[];
  challengers: HardhatEthersSigner[];
  /** Every account that can hold tokens in these tests. */
  accounts: string[];
  promises: StorePromise[][];
  messages: Uint8Array[];
  challengeIds: Set<string>;
  /** The (node, message) pairs challenged so far, most recent last: answers and resolutions pick among them. */
  challenged: { node: number; message: number }[];
  flagIds: bigint[];
}

async function world(): Promise<World> {
  const f = await loadFixture(slashingFixture);
  await setParameter(f, "ReviewerCount", 3n);
  const start = await now();
  const messages = Array.from({ length: MESSAGES }, (_, i) => ethers.toUtf8Bytes(`envelope ${i}`));
  const edges = [f.edge, f.edge2];
  const promises = edges.map((_, n) =>
    messages.map((m, i) => ({
      messageHash: messageHash(m),
      recipient: f.recipient.address,
      // Some promises outlive a run, some expire during it.
      expiry: start + BigInt(1_000 + 2_000 * i + 500 * n),
    })),
  );
  const accounts = [
    ...f.signers.map((s) => s.address),
    await f.registry.getAddress(),
    await f.slashing.getAddress(),
    f.treasury,
  ];
  return {
    f,
    edges,
    edgeSigners: [f.edgeSigner, f.edge2],
    challengers: [f.challenger, f.outsider, f.delegator],
    accounts,
    promises,
    messages,
    challengeIds: new Set(),
    challenged: [],
    flagIds: [],
  };
}

/** Successful steps by outcome over all runs: the generator must reach every path, not only reverts. */
const reached: Record<string, number> = {};
function reach(outcome: string): void {
  reached[outcome] = (reached[outcome] ?? 0) + 1;
}

/** Sends `tx`; a revert must be one of the slashing contract's or the token's custom errors, never anything else. */
async function attempt(w: World, tx: () => Promise<ContractTransactionResponse>) {
  try {
    return await mined(tx());
  } catch (error) {
    const data = (error as { data?: string }).data;
    const parsed = data
      ? (w.f.slashing.interface.parseError(data) ??
        w.f.token.interface.parseError(data) ??
        w.f.registry.interface.parseError(data))
      : null;
    if (!parsed) throw error;
    if (process.env.DEBUG_SLASHING) console.log("reverted:", parsed.name, parsed.args.toString());
    return undefined;
  }
}

async function totalTokens(w: World): Promise<bigint> {
  let total = 0n;
  for (const a of w.accounts) total += await w.f.token.balanceOf(a);
  return total;
}

/** What the contract should hold: the bonds of open challenges and the stakes of open flags. */
async function heldInTrust(w: World): Promise<bigint> {
  let held = 0n;
  for (const id of w.challengeIds) {
    const c = await w.f.slashing.challengeOf(id);
    if (c.status === 1n) held += c.bond;
  }
  for (const id of w.flagIds) {
    const view = await w.f.slashing.flagOf(id);
    if (view.status === 1n) held += view.stake;
  }
  return held;
}

async function step(w: World, a: Action): Promise<void> {
  const { f } = w;
  const s = f.slashing;
  const before = await f.token.balanceOf(await s.getAddress());
  await act(w, a);
  if ((await f.token.balanceOf(await s.getAddress())) !== before || a.kind === "wait") reach(a.kind);
}

async function act(w: World, a: Action): Promise<void> {
  const { f } = w;
  const s = f.slashing;
  switch (a.kind) {
    case "challenge": {
      const promise = w.promises[a.node][a.message];
      const signature = await signStorePromise(w.edgeSigners[a.node], f.domain, promise);
      w.challengeIds.add(await s.promiseId(w.edges[a.node].address, promise));
      w.challenged.push({ node: a.node, message: a.message });
      await attempt(w, () =>
        s.connect(w.challengers[a.challenger]).challenge(w.edges[a.node].address, promise, signature),
      );
      return;
    }
    case "answerAck": {
      if (w.challenged.length === 0) return;
      const c = w.challenged[w.challenged.length - 1 - (a.challenge % w.challenged.length)];
      const promise = w.promises[c.node][c.message];
      const id = await s.promiseId(w.edges[c.node].address, promise);
      const signature = await signAck(f.recipient, f.domain, {
        messageHash: promise.messageHash,
        node: w.edges[c.node].address,
      });
      if (await attempt(w, () => s.connect(w.edges[c.node]).answerWithAck(id, signature))) reach("ack");
      return;
    }
    case "answerMessage": {
      if (w.challenged.length === 0) return;
      const c = w.challenged[w.challenged.length - 1 - (a.challenge % w.challenged.length)];
      const id = await s.promiseId(w.edges[c.node].address, w.promises[c.node][c.message]);
      if (await attempt(w, () => s.connect(w.edgeSigners[c.node]).answerWithMessage(id, w.messages[c.message]))) {
        reach("message");
      }
      return;
    }
    case "resolveChallenge": {
      if (w.challenged.length === 0) return;
      const c = w.challenged[w.challenged.length - 1 - (a.challenge % w.challenged.length)];
      await resolveChallenge(w, await s.promiseId(w.edges[c.node].address, w.promises[c.node][c.message]));
      return;
    }
    case "equivocate": {
      const nodes = [...w.edges, ...f.watchdogs];
      const signers = [...w.edgeSigners, ...f.watchdogs];
      const slot = ethers.zeroPadValue(ethers.toBeHex(a.slot), 32);
      const st = await conflictingStatements(f.domain, signers[a.node], BigInt(a.epoch), slot);
      const result = await attempt(w, () =>
        s
          .connect(f.challenger)
          .reportEquivocation(nodes[a.node].address, st.first, st.firstSignature, st.second, st.secondSignature),
      );
      if (result) {
        reach("equivocation");
        const e = slashingEvent(s, result.receipt, "EquivocationSlashed").args;
        expect(e.reporterReward + e.treasuryAmount).to.equal(e.slashed);
      }
      return;
    }
    case "flag": {
      const result = await attempt(w, () =>
        s.connect(f.watchdogs[a.flagger]).flag(w.edges[a.node].address, ethers.ZeroHash),
      );
      if (result) {
        const e = slashingEvent(s, result.receipt, "NodeFlagged").args;
        w.flagIds.push(e.flagId as bigint);
        const reviewers = e.reviewers as string[];
        expect(reviewers).to.not.include(f.watchdogs[a.flagger].address);
        expect(new Set(reviewers).size).to.equal(reviewers.length);
        for (const r of reviewers) expect(await f.registry.isActive(r)).to.equal(true);
      }
      return;
    }
    case "vote": {
      if (w.flagIds.length === 0) return;
      const id = w.flagIds[a.flag % w.flagIds.length];
      const reviewers = (await s.flagOf(id)).reviewers;
      const reviewer = f.signers.find((x) => x.address === reviewers[a.reviewer % reviewers.length])!;
      if (await attempt(w, () => s.connect(reviewer).vote(id, a.slash))) reach("vote");
      return;
    }
    case "resolveFlag": {
      if (w.flagIds.length === 0) return;
      await resolveFlag(w, w.flagIds[a.flag % w.flagIds.length]);
      return;
    }
    case "unbond": {
      const stake = await f.registry.stakeOf(f.edge.address, f.delegator.address);
      const amount = (stake * BigInt(a.permille)) / 1_000n;
      if (amount > 0n) await attempt(w, () => f.registry.connect(f.delegator).unbond(f.edge.address, amount));
      return;
    }
    case "wait":
      await time.increase(a.seconds);
      return;
  }
}

/** Resolves challenge `id` if it can be; checks the split of the slash to the wei. */
async function resolveChallenge(w: World, id: string): Promise<void> {
  const s = w.f.slashing;
  const result = await attempt(w, () => s.connect(w.f.outsider).resolveChallenge(id));
  if (!result) return;
  reach("challenge slashed");
  const e = slashingEvent(s, result.receipt, "ChallengeSlashed").args;
  expect(e.challengerReward).to.equal((e.slashed * (await parameter(w.f, "ChallengerRewardBps"))) / BPS);
  expect(e.challengerReward + e.treasuryAmount).to.equal(e.slashed);
}

/** Resolves flag `id` if it can be; checks the outcome against the votes and the split to the wei. */
async function resolveFlag(w: World, id: bigint): Promise<void> {
  const s = w.f.slashing;
  const before = await s.flagOf(id);
  const result = await attempt(w, () => s.connect(w.f.outsider).resolveFlag(id));
  if (!result) return;
  const upheld = before.slashVotes > before.keepVotes;
  reach(upheld ? "flag upheld" : "flag rejected");
  if (upheld) {
    const e = slashingEvent(s, result.receipt, "FlagUpheld").args;
    expect(e.flaggerReward).to.equal((e.slashed * (await parameter(w.f, "FlaggerRewardBps"))) / BPS);
    expect(e.flaggerReward + e.reviewerReward * e.slashVotes + e.treasuryAmount).to.equal(e.slashed);
  } else {
    const e = slashingEvent(s, result.receipt, "FlagRejected").args;
    const paid = before.slashVotes === before.keepVotes ? before.slashVotes * 2n : before.keepVotes;
    expect(e.paidReviewers).to.equal(paid);
    expect(e.reviewerReward * e.paidReviewers + e.treasuryAmount).to.equal(before.stake);
  }
}

describe("Slashing properties", () => {
  it("conserves tokens and holds exactly the open bonds and stakes across random sequences", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 40 }), async (actions) => {
        const w = await world();
        const total = await totalTokens(w);
        const slashingAddress = await w.f.slashing.getAddress();
        for (const a of actions) {
          await step(w, a);
          expect(await totalTokens(w), `total after ${a.kind}`).to.equal(total);
          expect(await w.f.token.balanceOf(slashingAddress), `held after ${a.kind}`).to.equal(await heldInTrust(w));
        }
        // Everything still open can be closed, after which the contract holds nothing.
        await time.increase(3_600);
        for (const id of w.challengeIds) {
          if ((await w.f.slashing.challengeOf(id)).status === 1n) await resolveChallenge(w, id);
        }
        for (const id of w.flagIds) {
          if ((await w.f.slashing.flagOf(id)).status === 1n) await resolveFlag(w, id);
        }
        expect(await w.f.token.balanceOf(slashingAddress)).to.equal(0n);
        expect(await totalTokens(w)).to.equal(total);
      }),
      runParameters(RUNS),
    );
    if (process.env.DEBUG_SLASHING) console.log("reached:", reached);
    for (const outcome of [
      "ack",
      "message",
      "challenge slashed",
      "equivocation",
      "flag",
      "vote",
      "flag upheld",
      "flag rejected",
    ]) {
      expect(reached[outcome] ?? 0, `steps that reached '${outcome}' over all runs`).to.be.greaterThan(0);
    }
  });

  it("takes the same fraction from every staker behind a node, bonded or unbonding", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5_000 }),
        fc.bigInt({ min: 1n, max: 50_000n * TOKEN }),
        async (bps, unbondAmount) => {
          const w = await world();
          const { f } = w;
          await setParameter(f, "SlashEquivocationBps", BigInt(bps));
          const delegated = await f.registry.stakeOf(f.edge.address, f.delegator.address);
          const amount = unbondAmount % delegated || 1n;
          await (await f.registry.connect(f.delegator).unbond(f.edge.address, amount)).wait();
          const view = await f.registry.node(f.edge.address);
          const st = await conflictingStatements(f.domain, f.edgeSigner, 0n, ethers.ZeroHash);
          const { receipt } = await mined(
            f.slashing
              .connect(f.outsider)
              .reportEquivocation(f.edge.address, st.first, st.firstSignature, st.second, st.secondSignature),
          );
          const e = slashingEvent(f.slashing, receipt, "EquivocationSlashed").args;
          const bonded = view.selfStake + view.delegatedStake;
          const expected = (bonded * BigInt(bps)) / BPS + (view.unbondingStake * BigInt(bps)) / BPS;
          expect(e.slashed).to.equal(expected);
          const after = await f.registry.node(f.edge.address);
          expect(after.selfStake + after.delegatedStake).to.equal(bonded - (bonded * BigInt(bps)) / BPS);
          expect(after.unbondingStake).to.equal(view.unbondingStake - (view.unbondingStake * BigInt(bps)) / BPS);
        },
      ),
      runParameters(Math.max(4, Math.floor(RUNS / 2))),
    );
  });
});
