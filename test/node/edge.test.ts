import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { bytesToHex } from "@noble/hashes/utils.js";
import { Wallet, type Provider } from "ethers";
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { eventually, registerEdgeNode, registerRecipient, tempDir, withoutPeerId } from "./edgeFixture";
import { DEVNET_KEY_FILE, createEdgeHost, type EdgeHost } from "../../node/host";
import { startEdgeNode, type EdgeNode } from "../../node/edge";
import { LOG_LEVEL_ENV, setLogSink } from "../../node/log";
import { exchangeFrames } from "../../node/serve";
import { readEdgeNodes } from "../../sdk/chain/nodes";
import { generateNodeKey, peerIdBytes } from "../../sdk/net/peerId";
import {
  BILLS_MAX_FRAME_BYTES,
  BILLS_PROTOCOL,
  ERROR_FRAME_TYPE,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  WireErrorCode,
  parseErrorAnswer,
  type ErrorAnswer,
} from "../../sdk/wire/frame";
import { BillsType, encodeBillsMessage, encodeDelivery, parseBillsMessage } from "../../sdk/wire/messages";
import { NodeRole } from "../../sdk/chain/protocol";
import { wrapPacket, type Hop } from "../../sdk/wire/onion";

describe("node/edge: three edge nodes started with startEdgeNode against the real chain", function () {
  this.timeout(60_000);

  let root: string;
  const nodes: EdgeNode[] = [];
  let sender: EdgeHost;
  let f: Awaited<ReturnType<typeof fixture>>;

  async function fixture() {
    const base = await deployProtocolFixture();
    const operators = base.signers.slice(1, 4);
    const keys = operators.map(() => generateNodeKey());
    const signers = operators.map(() => Wallet.createRandom());
    for (const [i, op] of operators.entries()) {
      await registerEdgeNode(base, op, keys[i].peerId, [`/ip4/127.0.0.1/tcp/${1 + i}`], signers[i].address);
    }
    // The recipient's home nodes: node 1 (the exit) and node 2 (which gets the replica).
    const recipient = await registerRecipient(
      base.didRegistry,
      base.signers[6],
      [operators[1].address, operators[2].address],
      "edge/r",
    );
    const stranger = await registerRecipient(base.didRegistry, base.signers[7], [operators[2].address], "edge/s");
    return { ...base, operators, keys, signers, recipient, stranger };
  }

  /** What the nodes logged while starting (their registered addresses are placeholders until `before` updates them). */
  const startupLog: string[] = [];

  before(async () => {
    root = await tempDir("edge");
    f = await loadFixture(fixture);
    const previousSink = setLogSink((line) => startupLog.push(line));
    const previousLevel = process.env[LOG_LEVEL_ENV];
    process.env[LOG_LEVEL_ENV] = "warn"; // whatever the developer runs with: the warnings are asserted below
    for (const [i, op] of f.operators.entries()) {
      const dataDir = path.join(root, `node-${i}`);
      await mkdir(dataDir, { recursive: true });
      await writeFile(path.join(dataDir, DEVNET_KEY_FILE), JSON.stringify(f.keys[i]));
      nodes.push(
        await startEdgeNode({
          dataDir,
          provider: ethers.provider as unknown as Provider,
          deployment: f.deployment,
          operator: op.address,
          signerKey: f.signers[i].privateKey,
          metricsPort: i === 0 ? 0 : undefined,
          pollMs: 50,
        }),
      );
    }
    setLogSink(previousSink);
    if (previousLevel === undefined) delete process.env[LOG_LEVEL_ENV];
    else process.env[LOG_LEVEL_ENV] = previousLevel;
    // Each operator registers the addresses its node really listens on; discovery follows the updates.
    for (const [i, node] of nodes.entries()) {
      expect(node.peerId).to.equal(f.keys[i].peerId);
      const addresses = node.multiaddrs().map(withoutPeerId);
      await (await f.registry.connect(f.operators[i]).updateNode(node.peerId, addresses, f.signers[i].address)).wait();
    }
    await Promise.all(nodes.map((n) => n.discovery.sync()));
    sender = await createEdgeHost({ dataDir: path.join(root, "sender") });
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await sender?.stop();
    await rm(root, { recursive: true, force: true });
  });

  /** The route a client would build from the registry alone. */
  async function hopsFromRegistry(...indexes: number[]): Promise<{ hops: Hop[]; addresses: string[][] }> {
    const infos = await readEdgeNodes(f.registry);
    const chosen = indexes.map((i) => infos.find((n) => n.operator === f.operators[i].address)!);
    return {
      hops: chosen.map((n) => ({ peerId: peerIdBytes(n.peerId), relayPublicKey: n.relayPublicKey })),
      addresses: chosen.map((n) => n.multiaddrs),
    };
  }

  async function sendPacket(to: EdgeNode, packet: Uint8Array): Promise<ErrorAnswer[]> {
    const { multiaddr } = await import("@multiformats/multiaddr");
    await sender.libp2p.peerStore.merge(to.host.libp2p.peerId, {
      multiaddrs: to.multiaddrs().map((a) => multiaddr(withoutPeerId(a))),
    });
    const stream = await sender.libp2p.dialProtocol(to.host.libp2p.peerId, RELAY_PROTOCOL, {
      signal: AbortSignal.timeout(10_000),
    });
    const frames = await exchangeFrames(stream, [{ type: RELAY_PACKET_TYPE, body: packet }], RELAY_MAX_FRAME_BYTES);
    return frames.map((frame) => {
      expect(frame.type).to.equal(ERROR_FRAME_TYPE);
      return parseErrorAnswer(frame.body);
    });
  }

  it("warns at start when no registered address is the node's own, with the operator command that fixes it", () => {
    const warnings = startupLog
      .map((line) => JSON.parse(line) as { level: string; msg: string; registered?: string[]; fix?: string })
      .filter((entry) => entry.level === "warn" && entry.msg.startsWith("none of the registered addresses"));
    expect(warnings).to.have.length(nodes.length);
    for (const [i, warning] of warnings.entries()) {
      expect(warning.registered).to.deep.equal([`/ip4/127.0.0.1/tcp/${1 + i}`]);
      expect(warning.fix).to.contain(`npm run operator -- update --addr ${withoutPeerId(nodes[i].multiaddrs()[0])}`);
    }
  });

  it("discovers every node from the registry, with the addresses they registered", () => {
    for (const node of nodes) {
      expect(
        node.discovery
          .nodes()
          .map((n) => n.peerId)
          .sort(),
      ).to.deep.equal(nodes.map((n) => n.peerId).sort());
      for (const other of nodes) {
        expect(node.discovery.node(other.operator)?.multiaddrs).to.deep.equal(other.multiaddrs().map(withoutPeerId));
      }
    }
  });

  it("carries a message over two hops into the exit's inbox; the entry never learns the recipient, the exit never the sender", async () => {
    const [entry, exit, replica] = nodes;
    const { hops } = await hopsFromRegistry(0, 1);
    const messageId = Uint8Array.from(randomBytes(16));
    const envelope = new TextEncoder().encode("an end-to-end encrypted envelope");
    const packet = wrapPacket(hops, f.recipient.recipientId, encodeDelivery({ messageId, ttlSeconds: 3600, envelope }));

    expect(await sendPacket(entry, packet)).to.deep.equal([]);
    // The entry answers once it has written the packet to the exit: the store follows.
    for (let i = 0; i < 250 && !exit.inbox.store.find(f.recipient.recipientId, messageId, Date.now()); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const stored = exit.inbox.store.find(f.recipient.recipientId, messageId, Date.now());
    expect(stored?.envelope).to.deep.equal(envelope);

    const senderId = sender.libp2p.peerId.toString();
    expect(entry.host.relay.hopRecords).to.deep.equal([{ from: senderId, forwardTo: exit.peerId }]);
    expect(exit.host.relay.hopRecords).to.deep.equal([
      { from: entry.peerId, recipientId: bytesToHex(f.recipient.recipientId) },
    ]);
    expect(JSON.stringify(exit.host.relay.hopRecords)).to.not.include(senderId);
    expect(JSON.stringify(entry.host.relay.hopRecords)).to.not.include(bytesToHex(f.recipient.recipientId));

    // The exit replicates to the recipient's other home node, found through discovery.
    await eventually(
      () => replica.inbox.store.find(f.recipient.recipientId, messageId, Date.now()) !== undefined,
      "replication to the second home node",
    );
    expect(entry.metrics.value("relayed")).to.equal(1);
    expect(exit.metrics.value("delivered")).to.equal(1);
    expect(exit.metrics.value("stored")).to.equal(1);
  });

  it("answers NOT_FOUND at the exit for a recipient it is not a home node of, and MALFORMED for a payload that is no delivery", async () => {
    const [exitNode, entryNode] = nodes; // this time node 1 is the entry and node 0 the exit
    const { hops } = await hopsFromRegistry(1, 0);
    const delivery = encodeDelivery({
      messageId: Uint8Array.from(randomBytes(16)),
      ttlSeconds: 60,
      envelope: Uint8Array.of(1),
    });
    // The entry does not pass the exit's answer back (that would tell the sender about the exit): the exit counts it.
    expect(await sendPacket(entryNode, wrapPacket(hops, f.stranger.recipientId, delivery))).to.deep.equal([]);
    expect(
      await sendPacket(entryNode, wrapPacket(hops, f.recipient.recipientId, Uint8Array.of(9, 9, 9))),
    ).to.deep.equal([]);
    await eventually(() => exitNode.metrics.errorCount("relay") === 2, "two refusals at the exit");
    expect(exitNode.metrics.errorCount("relay", "not_found")).to.equal(1);
    expect(exitNode.metrics.errorCount("relay", "malformed")).to.equal(1);
    // A hop that is not a registered edge node is refused at the entry.
    const bogus: Hop = { peerId: peerIdBytes(generateNodeKey().peerId), relayPublicKey: hops[1].relayPublicKey };
    const answers = await sendPacket(entryNode, wrapPacket([hops[0], bogus], f.recipient.recipientId, delivery));
    expect(answers.map((a) => a.code)).to.deep.equal([WireErrorCode.NOT_FOUND]);
  });

  it("hands bills (COLLECT) and consent only to the registered peer of an active guardian", async () => {
    const { multiaddr } = await import("@multiformats/multiaddr");
    // The guardian's host runs under the key its registration names; the sender is any other peer.
    const guardianKey = generateNodeKey();
    const guardianDir = path.join(root, "guardian");
    await mkdir(guardianDir, { recursive: true });
    await writeFile(path.join(guardianDir, DEVNET_KEY_FILE), JSON.stringify({ privateKey: guardianKey.privateKey }));
    const guardianHost = await createEdgeHost({ dataDir: guardianDir });
    try {
      const operator = (await ethers.getSigners())[8];
      const stake = await f.parameters.minStake(NodeRole.Guardian);
      await (await f.token.transfer(operator.address, stake)).wait();
      await (await f.token.connect(operator).approve(await f.registry.getAddress(), stake)).wait();
      await (
        await f.registry
          .connect(operator)
          .register(NodeRole.Guardian, guardianKey.peerId, ["/ip4/127.0.0.1/tcp/9"], operator.address, 0, stake)
      ).wait();
      const ask = async (host: EdgeHost, type: number, body: Uint8Array) => {
        await host.libp2p.peerStore.merge(nodes[0].host.libp2p.peerId, {
          multiaddrs: nodes[0].multiaddrs().map((a) => multiaddr(withoutPeerId(a))),
        });
        const stream = await host.libp2p.dialProtocol(nodes[0].host.libp2p.peerId, BILLS_PROTOCOL, {
          signal: AbortSignal.timeout(10_000),
        });
        return exchangeFrames(stream, [{ type, body }], BILLS_MAX_FRAME_BYTES);
      };
      const collect = encodeBillsMessage({ type: BillsType.COLLECT, epoch: 1n });
      const consent = encodeBillsMessage({
        type: BillsType.CONSENT_REQUEST,
        epoch: 1n,
        prevBound: 0n,
        newBound: 1n,
        work: 1n,
      });
      for (const message of [collect, consent]) {
        const [refused] = await ask(sender, message.type, message.body);
        expect(refused.type).to.equal(ERROR_FRAME_TYPE);
        expect(parseErrorAnswer(refused.body).code).to.equal(WireErrorCode.UNAUTHORIZED);
      }
      const [bills] = await ask(guardianHost, collect.type, collect.body);
      expect(parseBillsMessage(bills.type, bills.body)).to.deep.equal({
        type: BillsType.BILLS,
        bills: [],
        more: false,
      });
      // Past the guardian check: the node looks at the slot itself (epoch 1 has not ended, so it holds no consent).
      const [answer] = await ask(guardianHost, consent.type, consent.body);
      expect(answer.type).to.equal(ERROR_FRAME_TYPE);
      expect(parseErrorAnswer(answer.body).code).to.not.equal(WireErrorCode.UNAUTHORIZED);
    } finally {
      await guardianHost.stop();
    }
  });

  it("serves health and Prometheus metrics on 127.0.0.1", async () => {
    const port = nodes[0].metricsPort;
    expect(port).to.be.a("number");
    const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as Record<string, unknown>;
    expect(health).to.deep.include({ status: "ok", peerId: nodes[0].peerId, registered: true, edgeNodesKnown: 3 });
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).to.match(/^sending_relayed_total 1$/m);
    expect(text).to.match(/^sending_edge_nodes_known 3$/m);
    expect((await fetch(`http://127.0.0.1:${port}/nothing`)).status).to.equal(404);
  });

  it("stops cleanly: no listener left, and a second stop does nothing", async () => {
    const node = nodes.pop()!;
    await node.stop();
    await node.stop();
    expect(node.host.libp2p.status).to.equal("stopped");
    expect(node.db.closed).to.equal(true);
  });
});
