import { expect } from "chai";
import { ethers } from "hardhat";
import { setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import { bytesToHex } from "@noble/hashes/utils.js";
import { Wallet, getBytes, hexlify, keccak256, toUtf8Bytes, type Provider } from "ethers";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Multiaddr } from "@multiformats/multiaddr" with { "resolution-mode": "import" };
import { deployProtocolFixture } from "../fixtures/protocol";
import { DEVNET_KEY_FILE, createEdgeHost, type EdgeHost } from "../../node/host";
import { startEdgeNode, type EdgeNode } from "../../node/edge";
import { generateNodeKey } from "../../sdk/net/peerId";
import { eventually, registerEdgeNode, registerRecipient, tempDir, withoutPeerId } from "./edgeFixture";
import { readEdgeNode } from "../../sdk/chain/nodes";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import {
  ProbeArrivals,
  RelayProbeTransport,
  WATCHDOG_STATE_FILE,
  Watchdog,
  percentile,
  runWatchdog,
  scoreOf,
  summarize,
  type WatchdogDaemon,
  type WatchdogEvent,
} from "../../node/watchdog";

const BALLOT_SLASH = 2n;
const BALLOT_KEEP = 3n;
const FLAG_UPHELD = 2n;

/**
 * Three real edge relays on 127.0.0.1 (a good one, one that drops every packet because it knows no next hop, and the
 * watchdogs' home node, the exit, which hands each delivery to the watchdog it is addressed to), registered on the
 * real chain under their real peer ids; two watchdog daemons with hosts of their own.
 */
describe("node/watchdog: probes real relays, scores and flags on chain, reviews flags", function () {
  this.timeout(120_000);

  let root: string;
  let home: EdgeHost;
  let good: EdgeHost;
  let bad: EdgeHost;
  let client1: EdgeHost;
  let client2: EdgeHost;
  const inboxes = new Map<string, ProbeArrivals>(); // recipient id (hex) → that watchdog's arrivals

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "sending-watchdog-"));
    home = await createEdgeHost({
      dataDir: path.join(root, "home"),
      relay: { onDeliver: (recipientId, payload) => void inboxes.get(bytesToHex(recipientId))?.deliver(payload) },
    });
    const toHome = new Map<string, Multiaddr[]>([[home.libp2p.peerId.toString(), home.libp2p.getMultiaddrs()]]);
    good = await createEdgeHost({ dataDir: path.join(root, "good"), relay: { peers: toHome } });
    bad = await createEdgeHost({ dataDir: path.join(root, "bad") }); // no next hop known: every packet is dropped
    client1 = await createEdgeHost({ dataDir: path.join(root, "client1") });
    client2 = await createEdgeHost({ dataDir: path.join(root, "client2") });
  });

  after(async () => {
    await Promise.all([home, good, bad, client1, client2].map((h) => h?.stop()));
    await rm(root, { recursive: true, force: true });
  });

  it("scores a node that drops probes low on chain, flags it, and a drawn reviewer votes by its own probes", async () => {
    const base = await deployProtocolFixture();
    const { token, registry, parameters, qualityOracle, slashing, signers } = base;
    const [, edgeHome, edgeGood, edgeBad, watchdog1, watchdog2, watchdog3] = signers;
    const register = async (s: (typeof signers)[number], role: NodeRole, host?: EdgeHost) => {
      const amount = role === NodeRole.Edge ? 1_000n * TOKEN : 500n * TOKEN;
      await token.transfer(s.address, amount + 200n * TOKEN); // the rest pays flag stakes
      await token.connect(s).approve(await registry.getAddress(), amount);
      const peerId = host?.libp2p.peerId.toString() ?? `12D3KooW${s.address.slice(2, 12)}`;
      const addrs = host?.libp2p.getMultiaddrs().map((a) => a.toString()) ?? ["/ip4/127.0.0.1/tcp/4001"];
      await registry.connect(s).register(role, peerId, addrs, s.address, 0, amount);
    };
    await register(edgeHome, NodeRole.Edge, home);
    await register(edgeGood, NodeRole.Edge, good);
    await register(edgeBad, NodeRole.Edge, bad);
    await register(watchdog1, NodeRole.Watchdog);
    await register(watchdog2, NodeRole.Watchdog);
    const contracts = {
      registry,
      parameters,
      rollup: base.rollup,
      qualityOracle,
      slashing,
      token,
    };
    const exit = (await readEdgeNode(registry, edgeHome.address))!;
    const daemon = (signer: (typeof signers)[number], host: EdgeHost, dir: string, events: WatchdogEvent[]) => {
      const arrivals = new ProbeArrivals();
      const inboxId = getBytes(signer.address);
      inboxes.set(bytesToHex(inboxId), arrivals);
      return new Watchdog({
        dataDir: path.join(root, dir),
        signer,
        contracts,
        startBlock: base.deployment.startBlock,
        transport: new RelayProbeTransport({ host: host.libp2p, exit, inboxId, arrivals }),
        probeTimeoutMs: 3_000,
        minProbes: 3,
        reviewProbes: 3,
        onEvent: (event) => events.push(event),
      });
    };
    const events1: WatchdogEvent[] = [];
    const events2: WatchdogEvent[] = [];
    const w1 = daemon(watchdog1, client1, "w1", events1);
    const w2 = daemon(watchdog2, client2, "w2", events2);

    // Three probe rounds in the epoch: the good node and the exit deliver, the bad node drops everything.
    const epoch = await parameters.currentEpoch();
    for (let i = 0; i < 3; i++) {
      expect(await w1.probeRound()).to.deep.equal({
        [edgeGood.address]: true,
        [edgeBad.address]: false,
        [edgeHome.address]: true,
      });
    }
    const summaries = w1.summaries(epoch);
    expect(summaries[edgeGood.address]).to.deep.include({ sent: 3, delivered: 3, deliveryBps: 10_000 });
    expect(summaries[edgeHome.address]).to.deep.include({ sent: 3, delivered: 3, deliveryBps: 10_000 });
    expect(summaries[edgeBad.address]).to.deep.include({ sent: 3, delivered: 0, deliveryBps: 0, p50Ms: undefined });
    expect(summaries[edgeGood.address].p99Ms).to.be.a("number");

    // After the epoch: the scores go on chain, and the bad node (0 < DeliveryThresholdBps) is flagged.
    await time.increaseTo(await parameters.epochStart(epoch + 1n));
    await w1.chainRound();
    const [scorers, scores] = await qualityOracle.scoresOf(edgeBad.address, epoch);
    expect(scorers).to.deep.equal([watchdog1.address]);
    expect(scores).to.deep.equal([0n]);
    expect((await qualityOracle.scoresOf(edgeGood.address, epoch))[1]).to.deep.equal([10_000n]);
    const flagged = events1.find((e) => e.kind === "flagged") as Extract<WatchdogEvent, { kind: "flagged" }>;
    expect(flagged).to.deep.include({ node: edgeBad.address, flagId: 1n });
    const flag = await slashing.flagOf(1n);
    expect(flag.node).to.equal(edgeBad.address);
    expect(flag.flagger).to.equal(watchdog1.address);
    expect(flag.reviewers).to.deep.equal([watchdog2.address]); // the only other active watchdog
    const posted = events1.find((e) => e.kind === "posted") as Extract<WatchdogEvent, { kind: "posted" }>;
    // The evidence (the probe statistics) is kept under the hash the flag carries.
    const [flagEvent] = await slashing.queryFilter(slashing.filters.NodeFlagged(1n));
    const evidence = await readFile(path.join(root, "w1", "evidence", `${flagEvent.args.evidenceHash}.json`), "utf8");
    expect(keccak256(toUtf8Bytes(evidence))).to.equal(flagEvent.args.evidenceHash);
    expect(JSON.parse(evidence)).to.deep.include({ node: edgeBad.address, threshold: 8_000 });
    expect(posted.scores).to.deep.equal({
      [edgeGood.address]: 10_000,
      [edgeBad.address]: 0,
      [edgeHome.address]: 10_000,
    });

    // The drawn reviewer has no results of its own: it probes the node, sees it drop everything, votes to slash.
    await w2.chainRound();
    expect(await slashing.ballotOf(1n, watchdog2.address)).to.equal(BALLOT_SLASH);
    expect(events2.filter((e) => e.kind === "probed")).to.have.length(0); // review probes are not round events
    expect(w2.summaries(epoch + 1n)[edgeBad.address]).to.deep.include({ sent: 3, delivered: 0 });

    // Every reviewer voted: the flagger resolves its flag, and the node is slashed and jailed.
    await w1.chainRound();
    expect((await slashing.flagOf(1n)).status).to.equal(FLAG_UPHELD);
    const [, jailedUntil] = await registry.nodeStatus(edgeBad.address);
    expect(jailedUntil).to.be.greaterThan(BigInt(await time.latest()));

    // A flag on the good node: whichever daemon is drawn votes to keep it, by its own probes.
    await register(watchdog3, NodeRole.Watchdog);
    await token.connect(watchdog3).approve(await slashing.getAddress(), 100n * TOKEN);
    await slashing.connect(watchdog3).flag(edgeGood.address, keccak256(toUtf8Bytes("unfounded")));
    const [reviewer] = (await slashing.flagOf(2n)).reviewers;
    expect([watchdog1.address, watchdog2.address]).to.include(reviewer);
    await w1.chainRound();
    await w2.chainRound();
    expect(await slashing.ballotOf(2n, reviewer)).to.equal(BALLOT_KEEP);

    // Restarted from its data directory, the flagger posts, flags and votes nothing again.
    const nonce = await ethers.provider.getTransactionCount(watchdog1.address);
    const restarted = daemon(watchdog1, client1, "w1", []);
    await restarted.chainRound();
    expect(await ethers.provider.getTransactionCount(watchdog1.address)).to.equal(nonce);
    const saved = JSON.parse(await readFile(path.join(root, "w1", WATCHDOG_STATE_FILE), "utf8")) as {
      posted: Record<string, string>;
    };
    expect(saved.posted[epoch.toString()]).to.equal(posted.txHash);

    // Once posting closes it finalizes the nodes it scored (which credits it).
    const [rules] = await qualityOracle.rulesOf(epoch);
    await time.increaseTo(rules.postingDeadline);
    await restarted.chainRound();
    expect(await qualityOracle.isFinalized(edgeBad.address, epoch)).to.equal(true);
    expect((await qualityOracle.qualityOf(edgeBad.address, epoch))[0]).to.equal(0n);
    expect((await qualityOracle.creditsOf(watchdog1.address, epoch))[0]).to.equal(3n);
  });
});

describe("node/watchdog: runWatchdog over real edge nodes, probes arriving through its own inbox", function () {
  this.timeout(120_000);

  it("probes three startEdgeNode nodes via its inbox subscription; a node that stops relaying loses its probes", async () => {
    const base = await deployProtocolFixture();
    const operators = base.signers.slice(1, 4);
    const keys = operators.map(() => generateNodeKey());
    const nodeSigners = operators.map(() => Wallet.createRandom());
    for (const [i, op] of operators.entries()) {
      await registerEdgeNode(base, op, keys[i].peerId, [`/ip4/127.0.0.1/tcp/${1 + i}`], nodeSigners[i].address);
    }
    // The watchdog operator: a fresh key (runWatchdog takes keys), staked, with a DID whose home node is node 0.
    const operatorWallet = Wallet.createRandom().connect(ethers.provider);
    await setBalance(operatorWallet.address, 10n ** 20n);
    await (await base.token.transfer(operatorWallet.address, 500n * TOKEN)).wait();
    await (await base.token.connect(operatorWallet).approve(await base.registry.getAddress(), 500n * TOKEN)).wait();
    await (
      await base.registry
        .connect(operatorWallet)
        .register(
          NodeRole.Watchdog,
          "12D3KooWwatchdog",
          ["/ip4/127.0.0.1/tcp/1"],
          operatorWallet.address,
          0,
          500n * TOKEN,
        )
    ).wait();
    const did = await registerRecipient(base.didRegistry, operatorWallet, [operators[0].address], "watchdog/inbox");

    const dir = await tempDir("watchdog-daemon");
    const nodes: EdgeNode[] = [];
    let daemon: WatchdogDaemon | undefined;
    try {
      for (const [i, op] of operators.entries()) {
        const dataDir = path.join(dir, `node-${i}`);
        await mkdir(dataDir, { recursive: true });
        await writeFile(path.join(dataDir, DEVNET_KEY_FILE), JSON.stringify(keys[i]));
        nodes.push(
          await startEdgeNode({
            dataDir,
            provider: ethers.provider as unknown as Provider,
            deployment: base.deployment,
            operator: op.address,
            signerKey: nodeSigners[i].privateKey,
            pollMs: 50,
          }),
        );
      }
      for (const [i, node] of nodes.entries()) {
        const addresses = node.multiaddrs().map(withoutPeerId);
        await (
          await base.registry.connect(operators[i]).updateNode(node.peerId, addresses, nodeSigners[i].address)
        ).wait();
      }
      await Promise.all(nodes.map((n) => n.discovery.sync()));

      daemon = await runWatchdog({
        dataDir: path.join(dir, "watchdog"),
        provider: ethers.provider as unknown as Provider,
        deployment: base.deployment,
        watchdogKey: operatorWallet.privateKey,
        inboxSigningKey: hexlify(did.identity.signing.secretKey),
        options: { probeIntervalMs: 100, chainIntervalMs: 3_600_000, probeTimeoutMs: 3_000 },
      });
      const epoch = await base.parameters.currentEpoch();
      const stats = (i: number) => daemon!.watchdog.summaries(epoch)[operators[i].address];
      // Node 0 is the exit (the watchdog's home node); 1 and 2 are entered first; node 0 is probed through one of them.
      await eventually(
        () => [0, 1, 2].every((i) => (stats(i)?.delivered ?? 0) >= 2),
        "two deliveries through each node",
      );

      await nodes[2].host.relay.stop(); // node 2 stops relaying: its probes cannot enter
      const lostBefore = stats(2).sent - stats(2).delivered;
      const deliveredBefore = stats(1).delivered;
      await eventually(() => stats(2).sent - stats(2).delivered >= lostBefore + 2, "two probes of node 2 lost");
      await eventually(() => stats(1).delivered >= deliveredBefore + 2, "node 1 still delivering");
      expect(stats(2).deliveryBps).to.be.below(10_000);
      expect(stats(1).deliveryBps).to.equal(10_000);
      // Delivered probes are acknowledged at the home node, so they do not pile up in the watchdog's inbox.
      await daemon.stop();
      const left = nodes[0].db.sqlite.prepare("SELECT count(*) AS n FROM inbox_messages").get() as { n: number };
      expect(left.n).to.be.at.most(1); // at most the probe in flight when the daemon stopped
    } finally {
      await daemon?.stop();
      await Promise.all(nodes.map((n) => n.stop()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("node/watchdog: statistics", () => {
  it("takes nearest-rank percentiles and cuts a slow node's score by its median latency, at most by half", () => {
    expect(percentile([], 50)).to.equal(undefined);
    expect(percentile([30, 10, 20], 50)).to.equal(20);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], 99)).to.equal(100);
    const fast = summarize({ sent: 4, delivered: 3, latencies: [10, 20, 30] });
    expect(fast).to.deep.equal({ sent: 4, delivered: 3, deliveryBps: 7_500, p50Ms: 20, p99Ms: 30 });
    expect(scoreOf(fast, 1_000)).to.equal(7_500);
    expect(scoreOf(summarize({ sent: 2, delivered: 2, latencies: [2_000, 2_000] }), 1_000)).to.equal(5_000);
    expect(scoreOf(summarize({ sent: 2, delivered: 2, latencies: [9_000, 9_000] }), 1_000)).to.equal(5_000);
    expect(scoreOf(summarize({ sent: 0, delivered: 0, latencies: [] }), 1_000)).to.equal(0);
  });
});
