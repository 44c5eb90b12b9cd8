/**
 * The devnet's demo scenario, run by `npm start` after the daemons are up and by test/e2e/devnet.test.ts: two demo
 * clients chat through the edge nodes (one offline for a while, then back), the epoch closes, the guardian settles
 * the bills with a real proof, the operators claim and withdraw their rewards, and an edge node that stops relaying
 * is found by the watchdogs, flagged, voted on, slashed and jailed, and rejoins after its jail. Every step prints
 * what happened (addresses, transaction hashes, amounts) and returns what the test asserts.
 *
 * Time: epochs are minutes long, so the scenario moves the in-process chain's clock forward with `evm_increaseTime`
 * and `evm_mine` (and says so); on a real chain these steps are waits.
 */
import { formatUnits, getAddress, type Provider, type Signer } from "ethers";
import { SendingClient, type ReceivedMessage } from "../../sdk/client";
import { MemoryStorage } from "../../sdk/storage";
import { NodeRole, parameterIndex } from "../../sdk/chain/protocol";
import { DEMO_ACCOUNTS, type DevnetDaemons, type DevnetNode, type DevnetSetup } from "./devnet";

/** Longest wait for a message on 127.0.0.1, a bill to be kept, a daemon's round: bounds a failure, not a timing. */
const WAIT_MS = 30_000;
/** Longest wait for the guardian's settlement: a proof takes seconds; the worker starts cold. */
const SETTLE_WAIT_MS = 180_000;
/** FlagStatus.Upheld in ISlashing. */
const FLAG_UPHELD = 2n;

/** What the scenario runs against: a set-up devnet with its daemons, the chain and its development accounts. */
export interface ScenarioContext {
  readonly setup: DevnetSetup;
  readonly daemons: DevnetDaemons;
  /** Development accounts of the public Hardhat mnemonic, index = account number. */
  readonly signers: readonly Signer[];
  readonly provider: Provider;
  /** Raw JSON-RPC to the chain: `evm_increaseTime` and `evm_mine` move its clock. */
  readonly rpc: (method: string, params: unknown[]) => Promise<unknown>;
  /** Probes a node needs in an epoch to be scored (the watchdogs' `minProbes`). */
  readonly minProbes: number;
  readonly signal?: AbortSignal;
}

/** One operator's reward claim: what it earned for the epoch and what reached its wallet. */
export interface ScenarioReward {
  readonly name: string;
  readonly operator: string;
  readonly claimTx: string;
  readonly withdrawTx: string;
  readonly withdrawn: bigint;
  readonly balanceBefore: bigint;
  readonly balanceAfter: bigint;
}

/** What happened, for the test to check against the chain. */
export interface ScenarioResult {
  readonly alice: string;
  readonly bob: string;
  /** Texts each client received, in order. */
  readonly receivedByAlice: string[];
  readonly receivedByBob: string[];
  /** The epoch of the chat, settled by the guardian. */
  readonly epoch: bigint;
  readonly settlementTxs: string[];
  /** Work settled per edge operator for `epoch`. */
  readonly work: Record<string, bigint>;
  readonly rewards: ScenarioReward[];
  /** The epoch in which the slashed node, its jail served and its relay restarted, delivered probes again. */
  readonly rejoinedInEpoch: bigint;
  readonly slashed: {
    readonly node: string;
    readonly flagId: bigint;
    readonly flagTx: string;
    readonly voteTx: string;
    readonly upheldTx: string;
    readonly amount: bigint;
    readonly jailedUntil: bigint;
  };
}

/** A scenario step that did not happen in time, or happened otherwise. */
export class ScenarioError extends Error {
  readonly code = "DEVNET_SCENARIO";
  constructor(message: string) {
    super(message);
    this.name = "ScenarioError";
  }
}

const tokens = (wei: bigint) => `${formatUnits(wei, 18)} SEND`;

/** Waits until `check()` holds, polling every 100 ms; fails naming `what` after `timeoutMs`. */
async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  signal: AbortSignal | undefined,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  signal?.throwIfAborted();
  while (!(await check())) {
    signal?.throwIfAborted();
    if (Date.now() > deadline)
      throw new ScenarioError(`runDevnetScenario: ${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Runs the demo scenario on a devnet whose daemons are running (scripts/lib/devnet.ts `startDevnetNodes`), printing
 * each step through `print`. Leaves the network running and whole (the slashed node back after its jail). The demo
 * clients it creates are stopped before it returns, also on failure.
 */
export async function runDevnetScenario(ctx: ScenarioContext, print: (line: string) => void): Promise<ScenarioResult> {
  const { setup, daemons, signers, provider, signal } = ctx;
  /** Every step prints; an interrupted scenario stops at the next line instead of finishing the step's account. */
  const log = (line: string) => {
    signal?.throwIfAborted();
    print(line);
  };
  const { parameters, rollup, distributor, token, registry, slashing } = setup.contracts;
  const edgeNodes = setup.nodes.filter((n) => n.role === NodeRole.Edge);
  const guardianNode = setup.nodes.find((n) => n.role === NodeRole.Guardian);
  if (edgeNodes.length < 3 || guardianNode === undefined || daemons.watchdogs.length < 2) {
    throw new ScenarioError("runDevnetScenario: expected at least 3 edge nodes, 2 watchdogs and a guardian");
  }
  const [edge1, edge2] = edgeNodes;
  const bad = edgeNodes[edgeNodes.length - 1];
  const edgeDaemon = (n: DevnetNode) => daemons.edges[edgeNodes.indexOf(n)];

  /** Moves the chain's clock to `time` (if it is behind) and mines a block there. */
  const advanceTo = async (time: bigint, why: string) => {
    const latest = await provider.getBlock("latest");
    if (latest === null) throw new ScenarioError("runDevnetScenario: the chain has no latest block");
    const delta = time - BigInt(latest.timestamp);
    if (delta > 0n) await ctx.rpc("evm_increaseTime", [Number(delta)]);
    await ctx.rpc("evm_mine", []);
    log(
      `  [clock] ${why}: the devnet moved the chain's clock ${delta > 0n ? delta : 0n} s forward (evm_increaseTime + evm_mine)`,
    );
  };

  const clients: SendingClient[] = [];
  const open = async (account: number, storage: MemoryStorage) => {
    const client = await SendingClient.create({
      signer: signers[account],
      storage,
      deployment: setup.deployment,
      provider,
      oneTimePrekeys: 6,
    });
    client.on("error", () => undefined); // background failures show in the steps that wait for their effects
    clients.push(client);
    return client;
  };
  const next = (client: SendingClient) => client.nextMessage(undefined, { signal: AbortSignal.timeout(WAIT_MS) });

  try {
    // 1. Chat.
    log("\n== 1. Two wallets chat through the edge nodes");
    const bobStorage = new MemoryStorage();
    const alice = await open(DEMO_ACCOUNTS[0], new MemoryStorage());
    let bob = await open(DEMO_ACCOUNTS[1], bobStorage);
    await alice.register({ homeNodes: [edge1.operator] });
    await bob.register({ homeNodes: [edge2.operator] });
    log(`  alice ${alice.address} (account ${DEMO_ACCOUNTS[0]}): DID on chain, home node ${edge1.name}`);
    log(`  bob   ${bob.address} (account ${DEMO_ACCOUNTS[1]}): DID on chain, home node ${edge2.name}`);
    await Promise.all([alice.start(), bob.start()]);
    const receivedByAlice: string[] = [];
    const receivedByBob: string[] = [];
    const names = new Map(edgeNodes.map((n) => [n.operator, n.name]));
    const route = (r: string[] | undefined) => (r ?? []).map((op) => names.get(op) ?? op).join(" -> ");

    let arriving = next(bob);
    const first = await alice.send(bob.address, "hi bob, it's alice");
    const got = await arriving;
    receivedByBob.push(got.text ?? "");
    log(`  alice -> bob  "${got.text}"  route ${route(first.routes[0])}  message ${first.messageIds[0]}`);
    const replying = next(alice);
    const reply = await bob.send(alice.address, "hi alice!");
    receivedByAlice.push((await replying).text ?? "");
    log(`  bob -> alice  "${receivedByAlice[0]}"  route ${route(reply.routes[0])}`);

    log("  bob goes offline");
    await bob.stop();
    const edge2Inbox = edgeDaemon(edge2).inbox.store;
    const waiting = edge2Inbox.totalMessages();
    await alice.send(bob.address, "are you there?");
    await alice.send(bob.address, "call me when you're back");
    await until(() => edge2Inbox.totalMessages() >= waiting + 2, "the messages to wait in bob's inbox", signal);
    log(`  alice sent 2 messages while bob was away: ${edge2.name} holds them in bob's inbox`);
    bob = await open(DEMO_ACCOUNTS[1], bobStorage);
    const backlog: ReceivedMessage[] = [];
    bob.on("message", (m) => backlog.push(m));
    await bob.start();
    await until(() => backlog.length >= 2, "bob to receive what waited", signal);
    receivedByBob.push(...backlog.map((m) => m.text ?? ""));
    log(`  bob is back and received: ${backlog.map((m) => `"${m.text}"`).join(", ")}`);
    arriving = next(alice);
    await bob.send(alice.address, "back now");
    receivedByAlice.push((await arriving).text ?? "");
    log(`  bob -> alice  "${receivedByAlice[1]}"`);

    // Each recipient signs a cumulative bill for the node that delivered to it and hands it over.
    await until(
      () => edgeDaemon(edge1).bills.count() >= 1 && edgeDaemon(edge2).bills.count() >= 1,
      "the home nodes to hold the recipients' bills",
      signal,
    );
    const epoch = await parameters.currentEpoch();
    for (const [who, client] of [
      ["alice", alice],
      ["bob", bob],
    ] as const) {
      for (const b of await client.currentBills()) {
        log(
          `  ${who} signed a bill for ${names.get(b.operator)}: ${b.bill.bill.messageCount} messages, ${b.bill.bill.byteCount} bytes in epoch ${epoch}`,
        );
      }
    }
    await Promise.allSettled(clients.map((c) => c.stop()));

    // 2. The epoch closes; the guardian settles.
    log(`\n== 2. Epoch ${epoch} closes and the guardian settles the bills with a proof`);
    await advanceTo(await parameters.epochStart(epoch + 1n), `end of epoch ${epoch}`);
    const { guardian } = daemons.guardian;
    await until(
      () => guardian.settlements.some((s) => s.epoch === epoch),
      `the guardian to settle epoch ${epoch}`,
      signal,
      SETTLE_WAIT_MS,
    );
    const settlements = guardian.settlements.filter((s) => s.epoch === epoch);
    for (const s of settlements) {
      log(`  guardian ${guardianNode.operator} settled ${s.bills} bills, proof verified on chain  tx ${s.txHash}`);
      for (const slot of s.slots) log(`    ${names.get(getAddress(slot.node)) ?? slot.node}: work ${slot.work}`);
    }
    const work: Record<string, bigint> = {};
    for (const n of edgeNodes) work[n.operator] = await rollup.workOf(n.operator, epoch);
    log(`  work on chain for epoch ${epoch}: ${edgeNodes.map((n) => `${n.name} ${work[n.operator]}`).join(", ")}`);

    // 3. Rewards, once the epoch is final.
    log(`\n== 3. Operators claim their rewards for epoch ${epoch}`);
    await advanceTo(await rollup.settlementDeadline(epoch), `end of epoch ${epoch}'s settlement window`);
    const rewards: ScenarioReward[] = [];
    const earners = [...edgeNodes.filter((n) => work[n.operator] > 0n), guardianNode];
    for (const node of earners) {
      const operator = signers[node.account];
      if ((await distributor.nextEpochOf(node.operator)) > epoch) continue;
      const balanceBefore = await token.balanceOf(node.operator);
      const claim = await (await distributor.connect(operator).claim(node.operator, epoch)).wait();
      const pending = await distributor.pendingRewards(node.operator, node.operator);
      const withdraw = await (await distributor.connect(operator).withdrawRewards(node.operator)).wait();
      const balanceAfter = await token.balanceOf(node.operator);
      rewards.push({
        name: node.name,
        operator: node.operator,
        claimTx: claim!.hash,
        withdrawTx: withdraw!.hash,
        withdrawn: pending,
        balanceBefore,
        balanceAfter,
      });
      log(`  ${node.name.padEnd(11)} claimed (tx ${claim!.hash})`);
      log(
        `              withdrew ${tokens(pending)} (tx ${withdraw!.hash}); wallet ${tokens(balanceBefore)} -> ${tokens(balanceAfter)}`,
      );
    }
    log("  (watchdogs claim after their credits are final: `npm run operator -- claim --account N` later)");

    // 4. A node that drops messages is found, flagged, voted on and slashed.
    log(`\n== 4. ${bad.name} stops relaying; the watchdogs find it`);
    await edgeDaemon(bad).host.relay.stop();
    log(`  ${bad.name} (${bad.operator}) now drops every packet it is handed`);
    const probeEpoch = (await parameters.currentEpoch()) + 1n;
    await advanceTo(await parameters.epochStart(probeEpoch), `start of epoch ${probeEpoch}`);
    const threshold = Number(await parameters.get(parameterIndex("DeliveryThresholdBps")));
    const good = edgeNodes.filter((n) => n !== bad);
    await until(
      () =>
        daemons.watchdogs.every((w) => {
          const s = w.watchdog.summaries(probeEpoch);
          const seen = (n: DevnetNode) => (s[n.operator]?.sent ?? 0) >= ctx.minProbes;
          return (
            seen(bad) &&
            s[bad.operator].deliveryBps < threshold &&
            good.every((n) => seen(n) && s[n.operator].deliveryBps >= threshold)
          );
        }),
      `both watchdogs to measure ${bad.name} below ${threshold} bps`,
      signal,
      60_000,
    );
    for (const [i, w] of daemons.watchdogs.entries()) {
      const s = w.watchdog.summaries(probeEpoch);
      log(
        `  watchdog-${i + 1}: ${edgeNodes.map((n) => `${n.name} ${s[n.operator].delivered}/${s[n.operator].sent} delivered`).join(", ")}`,
      );
    }
    await advanceTo(await parameters.epochStart(probeEpoch + 1n), `end of epoch ${probeEpoch}`);
    let flagId: bigint | undefined;
    await until(
      async () => {
        const flags = await slashing.queryFilter(slashing.filters.NodeFlagged(undefined, bad.operator));
        if (flags.length === 0) return false;
        flagId = flags[flags.length - 1].args.flagId;
        return (await slashing.flagOf(flagId)).status === FLAG_UPHELD;
      },
      `${bad.name}'s flag to be upheld`,
      signal,
      60_000,
    );
    const [flagged] = await slashing.queryFilter(slashing.filters.NodeFlagged(flagId));
    const [voted] = await slashing.queryFilter(slashing.filters.ReviewerVoted(flagId));
    const [upheld] = await slashing.queryFilter(slashing.filters.FlagUpheld(flagId));
    const [, jailedUntil] = await registry.nodeStatus(bad.operator);
    const watchdogName = (a: string) => setup.nodes.find((n) => n.operator === getAddress(a))?.name ?? a;
    log(
      `  ${watchdogName(flagged.args.flagger)} flagged ${bad.name} (flag ${flagId}, stake ${tokens(flagged.args.stake)})  tx ${flagged.transactionHash}`,
    );
    log(
      `  ${watchdogName(voted.args.reviewer)} reviewed by its own probes and voted slash=${voted.args.slash}  tx ${voted.transactionHash}`,
    );
    log(
      `  flag upheld: ${bad.name} slashed ${tokens(upheld.args.slashed)}, jailed until ${new Date(Number(jailedUntil) * 1000).toISOString()} (chain time)  tx ${upheld.transactionHash}`,
    );

    // 5. The operator fixes the node; after its jail it is active again, so the network is whole for your clients.
    log(`\n== 5. ${bad.name}'s operator restarts its relay; the node serves its jail and rejoins`);
    await edgeDaemon(bad).host.relay.start();
    // To the first epoch that starts after the jail: a whole epoch for the watchdogs to measure it again.
    let rejoined = (await parameters.currentEpoch()) + 1n;
    while ((await parameters.epochStart(rejoined)) < jailedUntil) rejoined++;
    await advanceTo(await parameters.epochStart(rejoined), `end of ${bad.name}'s jail, start of epoch ${rejoined}`);
    await until(() => registry.isActive(bad.operator), `${bad.name} to be active again`, signal);
    await until(
      () => daemons.watchdogs.every((w) => (w.watchdog.summaries(rejoined)[bad.operator]?.delivered ?? 0) >= 1),
      `the watchdogs to see ${bad.name} deliver again`,
      signal,
      60_000,
    );
    const stake = (await registry.node(bad.operator)).selfStake;
    log(`  ${bad.name} is active again with ${tokens(stake)} of self-stake, and delivers the watchdogs' probes`);

    return {
      alice: alice.address,
      bob: bob.address,
      receivedByAlice,
      receivedByBob,
      epoch,
      settlementTxs: settlements.map((s) => s.txHash),
      work,
      rewards,
      rejoinedInEpoch: rejoined,
      slashed: {
        node: bad.operator,
        flagId: flagId!,
        flagTx: flagged.transactionHash,
        voteTx: voted.transactionHash,
        upheldTx: upheld.transactionHash,
        amount: upheld.args.slashed,
        jailedUntil,
      },
    };
  } finally {
    await Promise.allSettled(clients.map((c) => c.stop()));
  }
}
