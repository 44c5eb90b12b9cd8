import { expect } from "chai";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import type { Multiaddr } from "@multiformats/multiaddr" with { "resolution-mode": "import" };
import { writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { DEVNET_KEY_FILE, ListenAddressError, NODE_KEY_FILE, createEdgeHost, type EdgeHost } from "../../node/host";
import { generateNodeKey, relayKeyPairFromNodeKey, relayPublicKeyOfPeer } from "../../sdk/net/peerId";
import { concatBytes } from "../../sdk/crypto/bytes";
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  WireErrorCode,
  encodeFrame,
  parseErrorAnswer,
  type ErrorAnswer,
} from "../../sdk/wire/frame";
import { peel, wrapPacket, type Hop } from "../../sdk/wire/onion";

const RECIPIENT = new Uint8Array(32).fill(0xee);
const MESSAGE = new TextEncoder().encode("an end-to-end encrypted envelope stands here");

const hopOf = (host: EdgeHost): Hop => ({
  peerId: host.libp2p.peerId.toMultihash().bytes,
  relayPublicKey: host.relayPublicKey,
});

/** Waits (up to 5 s) until `done()`: the entry forwards asynchronously, so delivery follows its answer. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** A relay frame carrying `text` through `route`, to RECIPIENT. */
const packetFrame = (route: EdgeHost[], text: string) =>
  encodeFrame(
    RELAY_PACKET_TYPE,
    wrapPacket(route.map(hopOf), RECIPIENT, new TextEncoder().encode(text)),
    RELAY_MAX_FRAME_BYTES,
  );

/** Writes `chunks` on a fresh relay stream, closes the write side and returns the error answers read back. */
async function exchange(sender: EdgeHost, to: EdgeHost, chunks: readonly Uint8Array[]): Promise<ErrorAnswer[]> {
  const stream: Stream = await sender.libp2p.dialProtocol(to.libp2p.peerId, RELAY_PROTOCOL, {
    signal: AbortSignal.timeout(5_000),
  });
  for (const chunk of chunks) if (!stream.send(chunk)) await stream.onDrain();
  await stream.close();
  const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
  const answers: ErrorAnswer[] = [];
  for await (const chunk of stream) {
    for (const frame of decoder.push(chunk)) {
      expect(frame.type).to.equal(ERROR_FRAME_TYPE);
      answers.push(parseErrorAnswer(frame.body));
    }
  }
  decoder.end();
  return answers;
}

/**
 * A next hop whose relay key the test knows and whose lanes the test reads itself: how many streams it was opened,
 * how many frames each chunk carried, and the payloads it peeled, in order.
 */
async function readingNextHop() {
  const dataDir = await mkdtemp(path.join(tmpdir(), "sending-next-"));
  const key = generateNodeKey();
  await writeFile(path.join(dataDir, DEVNET_KEY_FILE), JSON.stringify({ privateKey: key.privateKey }));
  const host = await createEdgeHost({ dataDir });
  const relayKey = relayKeyPairFromNodeKey(hexToBytes(key.privateKey.slice(2))).privateKey;
  await host.relay.stop();
  const seen = { lanes: 0, chunks: [] as number[], payloads: [] as string[] };
  await host.libp2p.handle(RELAY_PROTOCOL, async (stream) => {
    seen.lanes++;
    const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
    for await (const chunk of stream) {
      const frames = decoder.push(chunk);
      seen.chunks.push(frames.length);
      for (const frame of frames) {
        const result = peel(frame.body, relayKey);
        if (!("deliver" in result)) throw new Error("expected a delivery layer");
        seen.payloads.push(new TextDecoder().decode(result.payload));
      }
    }
  });
  const stop = async () => {
    await host.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
  return { host, seen, stop };
}

describe("node/relay: the layered-packet relay on real libp2p hosts", function () {
  this.timeout(30_000);

  let root: string;
  let sender: EdgeHost;
  let entry: EdgeHost;
  let exit: EdgeHost;
  const delivered: { recipientId: string; payload: Uint8Array }[] = [];

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "sending-relay-"));
    exit = await createEdgeHost({
      dataDir: path.join(root, "exit"),
      relay: {
        onDeliver: (recipientId, payload) => void delivered.push({ recipientId: bytesToHex(recipientId), payload }),
      },
    });
    const peers = new Map<string, Multiaddr[]>([[exit.libp2p.peerId.toString(), exit.libp2p.getMultiaddrs()]]);
    entry = await createEdgeHost({ dataDir: path.join(root, "entry"), relay: { peers } });
    sender = await createEdgeHost({ dataDir: path.join(root, "sender") });
    await sender.libp2p.peerStore.merge(entry.libp2p.peerId, { multiaddrs: entry.libp2p.getMultiaddrs() });
  });

  after(async () => {
    await Promise.all([sender?.stop(), entry?.stop(), exit?.stop()]);
    await rm(root, { recursive: true, force: true });
  });

  it("listens on 127.0.0.1 only by default", () => {
    for (const host of [sender, entry, exit]) {
      const addrs = host.libp2p.getMultiaddrs().map((ma) => ma.toString());
      expect(addrs.length).to.be.greaterThan(0);
      for (const addr of addrs) expect(addr).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
    }
  });

  it("carries a 2-hop packet from the entry to the exit's onDeliver exactly once", async () => {
    const packet = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, MESSAGE);
    const answers = await exchange(sender, entry, [encodeFrame(RELAY_PACKET_TYPE, packet, RELAY_MAX_FRAME_BYTES)]);
    expect(answers).to.deep.equal([]);
    await until(() => delivered.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 200)); // room for a duplicate to show up
    expect(delivered).to.have.length(1);
    expect(delivered[0].recipientId).to.equal(bytesToHex(RECIPIENT));
    expect(delivered[0].payload).to.deep.equal(MESSAGE);
  });

  it("writes the packets it peels together to the next hop in one write, in order and intact", async () => {
    const next = await readingNextHop();
    const peers = new Map<string, Multiaddr[]>([
      [next.host.libp2p.peerId.toString(), next.host.libp2p.getMultiaddrs()],
    ]);
    const relay = await createEdgeHost({ dataDir: path.join(root, "batching"), relay: { peers } });
    await sender.libp2p.peerStore.merge(relay.libp2p.peerId, { multiaddrs: relay.libp2p.getMultiaddrs() });
    try {
      const sent = Array.from({ length: 10 }, (_, i) => `packet ${i}`);
      const frames = sent.map((text) => packetFrame([relay, next.host], text));
      // One write of ten frames: the relay peels them in one turn and queues all ten on the lane.
      expect(await exchange(sender, relay, [concatBytes(...frames)])).to.deep.equal([]);
      await until(() => next.seen.payloads.length === sent.length);
      expect(next.seen.payloads).to.deep.equal(sent);
      const { chunks } = next.seen;
      expect(chunks.length, `chunks of ${chunks.join(", ")} frames`).to.be.lessThan(sent.length);
    } finally {
      await relay.stop();
      await next.stop();
    }
  });

  it("peels on worker threads when given some: every packet reaches the next hop intact, once", async () => {
    const next = await readingNextHop();
    const peers = new Map<string, Multiaddr[]>([
      [next.host.libp2p.peerId.toString(), next.host.libp2p.getMultiaddrs()],
    ]);
    const relay = await createEdgeHost({ dataDir: path.join(root, "workers"), relay: { peers, peelWorkers: 2 } });
    await sender.libp2p.peerStore.merge(relay.libp2p.peerId, { multiaddrs: relay.libp2p.getMultiaddrs() });
    try {
      expect(await relay.relay.peelWorkersReady()).to.equal(2);
      const sent = Array.from({ length: 80 }, (_, i) => `packet ${i}`);
      // Two writes of 40: each turn's packets go to one worker in one batch, the next turn's maybe to the other.
      const frames = sent.map((text) => packetFrame([relay, next.host], text));
      const answers = await exchange(sender, relay, [
        concatBytes(...frames.slice(0, 40)),
        concatBytes(...frames.slice(40)),
      ]);
      expect(answers).to.deep.equal([]);
      await until(() => next.seen.payloads.length === sent.length);
      await new Promise((resolve) => setTimeout(resolve, 100)); // room for a duplicate to show up
      expect([...next.seen.payloads].sort()).to.deep.equal([...sent].sort());
    } finally {
      await relay.stop();
      await next.stop();
    }
    expect(await relay.relay.peelWorkersReady()).to.equal(0);
  });

  it("limits the packets of a peer that is not an edge node, before peeling them, and never an edge node's", async () => {
    const next = await readingNextHop();
    const deliveredHere: string[] = [];
    const known = new Map<string, Multiaddr[]>([
      [next.host.libp2p.peerId.toString(), next.host.libp2p.getMultiaddrs()],
    ]);
    const limited = await createEdgeHost({
      dataDir: path.join(root, "limited"),
      relay: {
        peers: known,
        peerRateLimit: { perSecond: 0.001, burst: 3 },
        onDeliver: (_recipient, payload) => void deliveredHere.push(new TextDecoder().decode(payload)),
      },
    });
    const previous = await createEdgeHost({
      dataDir: path.join(root, "previous"),
      relay: { peers: new Map([[limited.libp2p.peerId.toString(), limited.libp2p.getMultiaddrs()]]) },
    });
    known.set(previous.libp2p.peerId.toString(), previous.libp2p.getMultiaddrs()); // an edge node `limited` knows
    for (const host of [limited, previous]) {
      await sender.libp2p.peerStore.merge(host.libp2p.peerId, { multiaddrs: host.libp2p.getMultiaddrs() });
    }
    try {
      // Straight from the sender (a client to `limited`): three pass, the other two are refused unpeeled.
      const direct = Array.from({ length: 5 }, (_, i) => packetFrame([limited, next.host], `direct ${i}`));
      const answers = await exchange(sender, limited, [concatBytes(...direct)]);
      expect(answers.map((a) => a.code)).to.deep.equal([WireErrorCode.RATE_LIMITED, WireErrorCode.RATE_LIMITED]);
      expect(answers[0].message).to.match(/at most 0.001 a second, 3 at once/);
      await until(() => next.seen.payloads.length === 3);
      expect(next.seen.payloads).to.deep.equal(["direct 0", "direct 1", "direct 2"]);
      expect(limited.relay.hopRecords.filter((r) => r.forwardTo !== undefined)).to.have.length(3);
      // Through an edge node it knows, as many as come.
      const relayed = Array.from({ length: 6 }, (_, i) => packetFrame([previous, limited], `relayed ${i}`));
      expect(await exchange(sender, previous, [concatBytes(...relayed)])).to.deep.equal([]);
      await until(() => deliveredHere.length === relayed.length);
      expect([...deliveredHere].sort()).to.deep.equal(relayed.map((_, i) => `relayed ${i}`));
    } finally {
      await Promise.all([limited.stop(), previous.stop(), next.stop()]);
    }
  });

  it("keeps a lane open past the forward timeout: one stream to the next hop carries packets sent seconds apart", async () => {
    const next = await readingNextHop();
    const peers = new Map<string, Multiaddr[]>([
      [next.host.libp2p.peerId.toString(), next.host.libp2p.getMultiaddrs()],
    ]);
    // A short forward timeout: it bounds the dial and each drain wait, and must not end an idle lane it opened.
    const relay = await createEdgeHost({
      dataDir: path.join(root, "long-lane"),
      relay: { peers, forwardTimeoutMs: 200 },
    });
    await sender.libp2p.peerStore.merge(relay.libp2p.peerId, { multiaddrs: relay.libp2p.getMultiaddrs() });
    try {
      expect(await exchange(sender, relay, [packetFrame([relay, next.host], "first")])).to.deep.equal([]);
      await until(() => next.seen.payloads.length === 1);
      await new Promise((resolve) => setTimeout(resolve, 600)); // three forward timeouts
      expect(await exchange(sender, relay, [packetFrame([relay, next.host], "second")])).to.deep.equal([]);
      await until(() => next.seen.payloads.length === 2);
      expect(next.seen.payloads).to.deep.equal(["first", "second"]);
      expect(next.seen.lanes, "streams the next hop was opened").to.equal(1);
    } finally {
      await relay.stop();
      await next.stop();
    }
  });

  it("lets the entry see only the next hop and the exit only the recipient", () => {
    const senderId = sender.libp2p.peerId.toString();
    const entryId = entry.libp2p.peerId.toString();
    const exitId = exit.libp2p.peerId.toString();
    expect(entry.relay.hopRecords).to.deep.equal([{ from: senderId, forwardTo: exitId }]);
    expect(exit.relay.hopRecords).to.deep.equal([{ from: entryId, recipientId: bytesToHex(RECIPIENT) }]);
    expect(JSON.stringify(entry.relay.hopRecords)).to.not.contain(bytesToHex(RECIPIENT));
    expect(JSON.stringify(exit.relay.hopRecords)).to.not.contain(senderId);
  });

  it("relays over a WebSockets listener, the transport browsers use", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "sending-host-ws-"));
    const got: Uint8Array[] = [];
    const wsExit = await createEdgeHost({
      dataDir: path.join(dataDir, "exit"),
      listen: ["/ip4/127.0.0.1/tcp/0/ws"],
      relay: { onDeliver: (_recipient, payload) => void got.push(payload) },
    });
    try {
      const addresses = wsExit.libp2p.getMultiaddrs().map((a) => a.toString());
      expect(addresses).to.have.length(1);
      expect(addresses[0]).to.match(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\//);
      // The entry forwards to the exit's WebSockets address; the sender reaches the entry over TCP.
      const peers = new Map<string, Multiaddr[]>([[wsExit.libp2p.peerId.toString(), wsExit.libp2p.getMultiaddrs()]]);
      const wsEntry = await createEdgeHost({ dataDir: path.join(dataDir, "entry"), relay: { peers } });
      try {
        await sender.libp2p.peerStore.merge(wsEntry.libp2p.peerId, { multiaddrs: wsEntry.libp2p.getMultiaddrs() });
        const packet = wrapPacket([hopOf(wsEntry), hopOf(wsExit)], RECIPIENT, MESSAGE);
        expect(
          await exchange(sender, wsEntry, [encodeFrame(RELAY_PACKET_TYPE, packet, RELAY_MAX_FRAME_BYTES)]),
        ).to.deep.equal([]);
        await until(() => got.length > 0);
        expect(got.map((p) => bytesToHex(p))).to.deep.equal([bytesToHex(MESSAGE)]);
        const connection = wsEntry.libp2p.getConnections(wsExit.libp2p.peerId)[0];
        expect(connection.remoteAddr.toString()).to.match(/\/ws/);
      } finally {
        await wsEntry.stop();
      }
    } finally {
      await wsExit.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("backs off a next hop that does not answer its dial: later packets for it fail without a new dial", async () => {
    // A TCP server that accepts and hangs up at once: a "node" whose handshake always fails. It counts the dials.
    let connections = 0;
    const server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const dead = generateNodeKey().peerId;
    const { multiaddr } = await import("@multiformats/multiaddr");
    const { peerIdFromString } = await import("@libp2p/peer-id");
    const relayDir = await mkdtemp(path.join(tmpdir(), "sending-backoff-"));
    const peers = new Map<string, Multiaddr[]>([[dead, [multiaddr(`/ip4/127.0.0.1/tcp/${port}`)]]]);
    const relay = await createEdgeHost({ dataDir: relayDir, relay: { peers } });
    try {
      await sender.libp2p.peerStore.merge(relay.libp2p.peerId, { multiaddrs: relay.libp2p.getMultiaddrs() });
      const toDead = () =>
        encodeFrame(
          RELAY_PACKET_TYPE,
          wrapPacket(
            [
              hopOf(relay),
              { peerId: peerIdFromString(dead).toMultihash().bytes, relayPublicKey: relayPublicKeyOfPeer(dead) },
            ],
            RECIPIENT,
            MESSAGE,
          ),
          RELAY_MAX_FRAME_BYTES,
        );
      const first = await exchange(sender, relay, [toDead()]);
      expect(first.map((a) => [a.code, a.message])).to.deep.equal([
        [WireErrorCode.INTERNAL, "relay: next hop unreachable"],
      ]);
      const dials = connections;
      expect(dials).to.be.greaterThan(0);
      const later = await exchange(sender, relay, [toDead(), toDead()]);
      expect(later.map((a) => a.code)).to.deep.equal([WireErrorCode.INTERNAL, WireErrorCode.INTERNAL]);
      expect(connections).to.equal(dials); // within NEXT_HOP_BACKOFF_MS: no new dial
    } finally {
      await relay.stop();
      server.close();
      await rm(relayDir, { recursive: true, force: true });
    }
  });

  it("refuses a replayed packet", async () => {
    const packet = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, MESSAGE);
    const frame = encodeFrame(RELAY_PACKET_TYPE, packet, RELAY_MAX_FRAME_BYTES);
    expect(await exchange(sender, entry, [frame])).to.deep.equal([]);
    const answers = await exchange(sender, entry, [frame]);
    expect(answers.map((a) => a.code)).to.deep.equal([WireErrorCode.REPLAYED]);
    await until(() => delivered.length >= 2); // the entry forwards once the frame is written, not delivered
    expect(delivered).to.have.length(2);
  });

  it("answers bad frames and packets with typed errors on the same stream, then relays the next valid one", async () => {
    const good = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, MESSAGE);
    const tampered = good.slice();
    tampered[100] ^= 1;
    const lowOrder = good.slice();
    lowOrder.fill(0, 0, 32); // an all-zero ephemeral key: the relay's native X25519 refuses it, as @noble's does
    const answers = await exchange(sender, entry, [
      encodeFrame(0x42, new Uint8Array(8), RELAY_MAX_FRAME_BYTES), // a type the relay does not define
      encodeFrame(RELAY_PACKET_TYPE, new Uint8Array(100), RELAY_MAX_FRAME_BYTES), // not a whole packet
      encodeFrame(RELAY_PACKET_TYPE, tampered, RELAY_MAX_FRAME_BYTES), // MAC fails
      encodeFrame(RELAY_PACKET_TYPE, lowOrder, RELAY_MAX_FRAME_BYTES),
      encodeFrame(RELAY_PACKET_TYPE, good, RELAY_MAX_FRAME_BYTES),
    ]);
    expect(answers.map((a) => a.code)).to.deep.equal([
      WireErrorCode.UNSUPPORTED,
      WireErrorCode.MALFORMED,
      WireErrorCode.MALFORMED,
      WireErrorCode.MALFORMED,
    ]);
    expect(answers[3].message).to.match(/low order/);
    await until(() => delivered.length >= 3); // the entry forwards once the frame is written, not delivered
    expect(delivered).to.have.length(3);
  });

  it("accepts a burst of new clients from one address: 12 connections in the same second are all served", async () => {
    const clients = await Promise.all(
      Array.from({ length: 12 }, (_, i) => createEdgeHost({ dataDir: path.join(root, `burst-${i}`) })),
    );
    try {
      const before = delivered.length;
      const answers = await Promise.all(
        clients.map(async (c, i) => {
          await c.libp2p.peerStore.merge(entry.libp2p.peerId, { multiaddrs: entry.libp2p.getMultiaddrs() });
          return exchange(c, entry, [packetFrame([entry, exit], `client ${i}`)]);
        }),
      );
      expect(answers).to.deep.equal(clients.map(() => []));
      await until(() => delivered.length === before + clients.length);
      expect(delivered.length).to.equal(before + clients.length);
      delivered.splice(before); // the later tests count the deliveries of their own packets
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
    }
  });

  it("answers a malformed length prefix, closes that stream, and keeps serving new ones", async () => {
    const oversize = new Uint8Array(4);
    new DataView(oversize.buffer).setUint32(0, RELAY_MAX_FRAME_BYTES + 1);
    expect((await exchange(sender, entry, [oversize, new Uint8Array(64)])).map((a) => a.code)).to.deep.equal([
      WireErrorCode.TOO_LARGE,
    ]);
    expect((await exchange(sender, entry, [new Uint8Array(4)])).map((a) => a.code)).to.deep.equal([
      WireErrorCode.MALFORMED,
    ]);
    expect(
      (await exchange(sender, entry, [new Uint8Array([0, 0, 0x10, 0x01, 1, 2])])).map((a) => a.code),
    ).to.deep.equal(
      [WireErrorCode.MALFORMED], // truncated: the stream ended inside a frame
    );
    const packet = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, MESSAGE);
    expect(
      await exchange(sender, entry, [encodeFrame(RELAY_PACKET_TYPE, packet, RELAY_MAX_FRAME_BYTES)]),
    ).to.deep.equal([]);
    await until(() => delivered.length >= 4); // the entry forwards once the frame is written, not delivered
    expect(delivered).to.have.length(4);
  });
});

describe("node/host: the edge node's keys", function () {
  this.timeout(30_000);

  it("keeps its peer id and relay key across restarts, in one key file only the owner can read", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "sending-host-"));
    try {
      const first = await createEdgeHost({ dataDir });
      const peerId = first.libp2p.peerId.toString();
      const relayKey = bytesToHex(first.relayPublicKey);
      await first.stop();
      expect((await stat(path.join(dataDir, NODE_KEY_FILE))).mode & 0o777).to.equal(0o600);
      // The relay key is derived from the identity key: the peer id alone gives it to senders.
      expect(bytesToHex(relayPublicKeyOfPeer(peerId))).to.equal(relayKey);
      await stat(path.join(dataDir, "relay.key")).then(
        () => expect.fail("relay.key should no longer be written"),
        (error: NodeJS.ErrnoException) => expect(error.code).to.equal("ENOENT"),
      );
      const second = await createEdgeHost({ dataDir });
      expect(second.libp2p.peerId.toString()).to.equal(peerId);
      expect(bytesToHex(second.relayPublicKey)).to.equal(relayKey);
      await second.stop();

      const other = await createEdgeHost({ dataDir: path.join(dataDir, "other") });
      expect(other.libp2p.peerId.toString()).to.not.equal(peerId);
      await other.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("imports a devnet peer-key.json, so the daemon runs under the peer id its registration names", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "sending-host-"));
    try {
      const key = generateNodeKey();
      await writeFile(
        path.join(dataDir, DEVNET_KEY_FILE),
        JSON.stringify({ privateKey: key.privateKey, peerId: key.peerId }),
      );
      const host = await createEdgeHost({ dataDir });
      expect(host.libp2p.peerId.toString()).to.equal(key.peerId);
      expect(bytesToHex(host.relayPublicKey)).to.equal(bytesToHex(relayPublicKeyOfPeer(key.peerId)));
      await host.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("refuses a listen address it has no transport for", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "sending-host-"));
    try {
      for (const listen of ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0/wss/extra"]) {
        await createEdgeHost({ dataDir, listen: [listen] }).then(
          () => expect.fail("expected ListenAddressError"),
          (error: unknown) => expect(error).to.be.instanceOf(ListenAddressError),
        );
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
