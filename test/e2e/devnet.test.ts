import { expect } from "chai";
import hre, { ethers } from "hardhat";
import type { Provider } from "ethers";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  DEFAULT_DAEMON_OPTIONS,
  DEFAULT_DEVNET_OPTIONS,
  setUpDevnet,
  startDevnetNodes,
  type DevnetDaemons,
} from "../../scripts/lib/devnet";
import { runDevnetScenario } from "../../scripts/lib/scenario";
import { NodeRole } from "../../sdk/chain/protocol";

/** Epochs of two minutes (the clock is moved anyway; short epochs keep the chain's jumps small). */
const EPOCH_LENGTH = 120;
/** Probes a node needs in an epoch to be scored. */
const MIN_PROBES = 3;
/** FlagStatus.Upheld in ISlashing. */
const FLAG_UPHELD = 2n;

/** Whether `port` is free on 127.0.0.1 now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A first port of `count` consecutive free ports on 127.0.0.1 (the devnet registers edge i at base + i). */
async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return base;
  }
  throw new Error("freePortRange: no free range found");
}

/**
 * The devnet of `npm start` on the in-process Hardhat chain: the protocol deployed and the nodes registered by
 * setUpDevnet, three edge nodes, two watchdogs and a guardian started by startDevnetNodes on 127.0.0.1, and the
 * demo scenario of scripts/lib/scenario.ts run against them, each outcome checked on chain.
 */
describe("e2e: the devnet runs the whole network and its demo scenario", function () {
  this.timeout(300_000);

  let root: string;
  let daemons: DevnetDaemons | undefined;
  let snapshot: unknown;
  const lines: string[] = [];

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "sending-devnet-"));
    snapshot = await hre.network.provider.send("evm_snapshot", []); // the scenario moves the clock by many minutes
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") console.log(lines.join("\n")); // the scenario's account, to debug
  });

  after(async () => {
    await daemons?.stop();
    await hre.network.provider.send("evm_revert", [snapshot]);
    await rm(root, { recursive: true, force: true });
  });

  it("chats with an offline recipient, settles with a proof, pays rewards and slashes the node that drops", async () => {
    const signers = await ethers.getSigners();
    const provider = ethers.provider as unknown as Provider;
    const log = (line: string) => lines.push(line);
    const setup = await setUpDevnet(signers, {
      ...DEFAULT_DEVNET_OPTIONS,
      epochLength: EPOCH_LENGTH,
      basePort: await freePortRange(6),
      dataDir: path.join(root, "nodes"),
      deploymentFile: path.join(root, "localhost.json"),
      log,
    });
    const edges = setup.nodes.filter((n) => n.role === NodeRole.Edge);
    const guardianNode = setup.nodes.find((n) => n.role === NodeRole.Guardian)!;
    expect(edges).to.have.length(3);
    expect(setup.nodes.filter((n) => n.role === NodeRole.Watchdog)).to.have.length(2);

    daemons = await startDevnetNodes(setup, signers, {
      ...DEFAULT_DAEMON_OPTIONS,
      provider,
      metricsBasePort: undefined,
      pollMs: 100,
      guardianPollMs: 500,
      probeIntervalMs: 300,
      chainIntervalMs: 500,
      minProbes: MIN_PROBES,
      logLevel: "silent",
      log,
    });
    // Each edge node runs under the peer id it registered, on its registered port.
    for (const [i, node] of edges.entries()) {
      expect(daemons.edges[i].peerId).to.equal(node.peerId);
      expect(daemons.edges[i].multiaddrs()[0]).to.equal(`${node.multiaddrs[0]}/p2p/${node.peerId}`);
    }
    const { rollup, registry, slashing, distributor, token } = setup.contracts;
    const bad = edges[2];
    const stakeBefore = (await registry.node(bad.operator)).selfStake;

    const result = await runDevnetScenario(
      {
        setup,
        daemons,
        signers,
        provider,
        rpc: (method, params) => hre.network.provider.send(method, params),
        minProbes: MIN_PROBES,
      },
      log,
    );

    // 1. Both clients received every message, the offline recipient the two that waited for it.
    expect(result.receivedByBob).to.deep.equal(["hi bob, it's alice", "are you there?", "call me when you're back"]);
    expect(result.receivedByAlice).to.deep.equal(["hi alice!", "back now"]);

    // 2. The home nodes' work was settled with a proof: a bound and work per node, the guardian credited.
    const { epoch } = result;
    expect(result.settlementTxs).to.have.length(1); // both nodes' bills fit one batch: one proof
    const work1 = await rollup.workOf(edges[0].operator, epoch);
    const work2 = await rollup.workOf(edges[1].operator, epoch);
    expect(work1).to.be.greaterThan(0n);
    expect(work2).to.be.greaterThan(0n);
    expect(await rollup.boundOf(edges[0].operator, epoch)).to.be.greaterThan(0n);
    expect(await rollup.boundOf(edges[1].operator, epoch)).to.be.greaterThan(0n);
    expect(await rollup.workOf(bad.operator, epoch)).to.equal(0n); // relayed, but nobody's home node
    expect(await rollup.guardianWorkOf(guardianNode.operator, epoch)).to.equal(work1 + work2);

    // 3. The operators claimed the epoch and their wallets grew by what they withdrew.
    expect(result.rewards.map((r) => r.name)).to.deep.equal(["edge-1", "edge-2", "guardian-1"]);
    for (const reward of result.rewards) {
      expect(reward.withdrawn).to.be.greaterThan(0n);
      expect(reward.balanceAfter - reward.balanceBefore).to.equal(reward.withdrawn);
      expect(await distributor.nextEpochOf(reward.operator)).to.equal(epoch + 1n);
      expect(await distributor.pendingRewards(reward.operator, reward.operator)).to.equal(0n);
      expect(await token.balanceOf(reward.operator)).to.be.at.least(reward.balanceAfter);
    }

    // 4. The node that stopped relaying was flagged, the flag upheld by the other watchdog's vote, the node slashed
    // and jailed.
    const flag = await slashing.flagOf(result.slashed.flagId);
    expect(flag.node).to.equal(bad.operator);
    expect(flag.status).to.equal(FLAG_UPHELD);
    expect(flag.reviewers).to.have.length(1);
    expect(flag.reviewers[0]).to.not.equal(flag.flagger);
    expect(await slashing.ballotOf(result.slashed.flagId, flag.reviewers[0])).to.equal(2n); // slash
    const after = await registry.node(bad.operator);
    expect(stakeBefore - after.selfStake).to.equal(result.slashed.amount);
    expect(result.slashed.amount).to.be.greaterThan(0n);
    const [upheld] = await slashing.queryFilter(slashing.filters.FlagUpheld(result.slashed.flagId));
    const upheldAt = (await upheld.getBlock()).timestamp;
    expect(after.jailedUntil).to.equal(result.slashed.jailedUntil);
    expect(after.jailedUntil).to.be.greaterThan(BigInt(upheldAt)); // jailed when the flag was upheld
    // 5. Its jail served and its relay restarted, it is active again and the watchdogs' probes pass through it.
    expect(await registry.isActive(bad.operator)).to.equal(true);
    for (const w of daemons.watchdogs) {
      expect(w.watchdog.summaries(result.rejoinedInEpoch)[bad.operator].delivered).to.be.at.least(1);
    }
    // The healthy nodes were not flagged.
    for (const node of edges.slice(0, 2)) {
      expect(await slashing.queryFilter(slashing.filters.NodeFlagged(undefined, node.operator))).to.deep.equal([]);
    }
    // The account the devnet printed names the transactions.
    const text = lines.join("\n");
    for (const tx of [...result.settlementTxs, result.slashed.flagTx, result.slashed.upheldTx]) {
      expect(text).to.contain(tx);
    }
    expect(text).to.contain("evm_increaseTime");
  });
});
