import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { Wallet, getBytes, keccak256, toUtf8Bytes, type Provider } from "ethers";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { deterministicRandom } from "../vectors/deterministicRandom";
import { registerEdgeNode, registerRecipient, tempDir } from "./edgeFixture";
import { DEVNET_KEY_FILE, createEdgeHost, type EdgeHost } from "../../node/host";
import { startEdgeNode, type EdgeNode } from "../../node/edge";
import { exchangeFrames } from "../../node/serve";
import { nodeIdFromAddress, signBill } from "../../sdk/bill/bill";
import { generateOneTimePrekeys } from "../../sdk/crypto/x3dh";
import { generateNodeKey, peerIdBytes, relayPublicKeyOfPeer } from "../../sdk/net/peerId";
import {
  BILLS_PROTOCOL,
  ERROR_FRAME_TYPE,
  INBOX_PROTOCOL,
  MAX_FRAME_BYTES,
  PREKEYS_PROTOCOL,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  encodeFrame,
  parseErrorAnswer,
  type Frame,
  type ProtocolId,
} from "../../sdk/wire/frame";
import {
  BillsType,
  InboxType,
  PrekeysType,
  encodeBillsMessage,
  encodeDelivery,
  encodeInboxMessage,
  encodePrekeysMessage,
  parsePrekeysMessage,
  signInboxRequest,
  signPublishPrekeys,
} from "../../sdk/wire/messages";
import { wrapPacket } from "../../sdk/wire/onion";

/** Frames sent in all, spread evenly over the four protocols. */
const FRAMES = 10_000;
/** Frames written on one stream before it is closed. */
const FRAMES_PER_STREAM = 25;
/** Streams open at once. */
const CONCURRENCY = 4;

describe("node/edge fuzz: 10,000 random and mutated frames over every protocol of a live edge node", function () {
  this.timeout(300_000);

  let root: string;
  let node: EdgeNode;
  let attacker: EdgeHost;
  let client: EdgeHost;
  let f: Awaited<ReturnType<typeof fixture>>;

  async function fixture() {
    const base = await deployProtocolFixture();
    const [, op, other] = base.signers;
    const key = generateNodeKey();
    const signer = Wallet.createRandom();
    await registerEdgeNode(base, op, key.peerId, ["/ip4/127.0.0.1/tcp/1"], signer.address);
    await registerEdgeNode(base, other, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/2"]);
    const recipient = await registerRecipient(base.didRegistry, base.signers[6], [op.address], "fuzz/r");
    return { ...base, op, other, key, signer, recipient };
  }

  before(async () => {
    f = await loadFixture(fixture);
    root = await tempDir("fuzz");
    const dataDir = path.join(root, "node");
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, DEVNET_KEY_FILE), JSON.stringify(f.key));
    node = await startEdgeNode({
      dataDir,
      provider: ethers.provider as unknown as Provider,
      deployment: f.deployment,
      operator: f.op.address,
      signerKey: f.signer.privateKey,
      metricsPort: 0,
    });
    attacker = await createEdgeHost({ dataDir: path.join(root, "attacker") });
    client = await createEdgeHost({ dataDir: path.join(root, "client") });
    for (const host of [attacker, client]) {
      await host.libp2p.peerStore.merge(node.host.libp2p.peerId, { multiaddrs: node.host.libp2p.getMultiaddrs() });
    }
  });

  after(async () => {
    await Promise.all([node?.stop(), attacker?.stop(), client?.stop()]);
    await rm(root, { recursive: true, force: true });
  });

  const nodePeerId = () => peerIdBytes(node.peerId);

  async function send(host: EdgeHost, protocol: ProtocolId, frames: Frame[]): Promise<Frame[]> {
    const stream = await host.libp2p.dialProtocol(node.host.libp2p.peerId, protocol, {
      signal: AbortSignal.timeout(20_000),
    });
    return exchangeFrames(stream, frames, MAX_FRAME_BYTES[protocol]);
  }

  /** Sends raw bytes (not necessarily frames) and reads until the node closes; never throws for a reset stream. */
  async function sendRaw(protocol: ProtocolId, chunks: Uint8Array[]): Promise<void> {
    const stream = await attacker.libp2p.dialProtocol(node.host.libp2p.peerId, protocol, {
      signal: AbortSignal.timeout(20_000),
    });
    try {
      for (const chunk of chunks) if (!stream.send(chunk)) await stream.onDrain();
      await stream.close();
      for await (const chunk of stream) void chunk;
    } catch {
      // The node may reset a stream it found out of sync: that is an answer too.
    }
  }

  function publication(oneTime: number, firstId: number) {
    return signPublishPrekeys(
      nodePeerId(),
      {
        type: PrekeysType.PUBLISH,
        recipientId: f.recipient.recipientId,
        timestamp: Date.now(),
        nonce: getBytes(keccak256(toUtf8Bytes(`fuzz/nonce/${firstId}/${Date.now()}`))).slice(0, 16),
        identity: { dh: f.recipient.identity.dh.publicKey, signing: f.recipient.identity.signing.publicKey },
        signedPrekey: {
          id: f.recipient.signedPrekey.id,
          publicKey: f.recipient.signedPrekey.keyPair.publicKey,
          signature: f.recipient.signedPrekey.signature,
        },
        oneTimePrekeys: generateOneTimePrekeys(firstId, oneTime).map((p) => ({
          id: p.id,
          publicKey: p.keyPair.publicKey,
        })),
      },
      f.recipient.identity.signing.secretKey,
    );
  }

  /** Valid frames of each protocol, the seeds of the mutations. None would store anything if sent unchanged twice. */
  async function samples(): Promise<Record<ProtocolId, Frame[]>> {
    const epoch = await f.parameters.currentEpoch();
    const delivery = encodeDelivery({
      messageId: new Uint8Array(16).fill(1),
      ttlSeconds: 60,
      envelope: Uint8Array.of(7),
    });
    const bogusHop = {
      peerId: peerIdBytes(generateNodeKey().peerId),
      relayPublicKey: relayPublicKeyOfPeer(node.peerId),
    };
    const self = { peerId: nodePeerId(), relayPublicKey: relayPublicKeyOfPeer(node.peerId) };
    const request = (type: typeof InboxType.FETCH | typeof InboxType.LIST) =>
      signInboxRequest(
        nodePeerId(),
        {
          type,
          recipientId: f.recipient.recipientId,
          timestamp: Date.now(),
          nonce: new Uint8Array(16).fill(type),
          limit: 4,
        },
        f.recipient.identity.signing.secretKey,
      );
    const outsider = getBytes(keccak256(toUtf8Bytes("fuzz/outsider")));
    return {
      [RELAY_PROTOCOL]: [
        { type: RELAY_PACKET_TYPE, body: wrapPacket([self, bogusHop], f.recipient.recipientId, delivery) },
      ],
      [INBOX_PROTOCOL]: [
        encodeInboxMessage({
          type: InboxType.STORE,
          recipientId: f.recipient.recipientId,
          messageId: new Uint8Array(16).fill(2),
          ttlSeconds: 60,
          envelope: Uint8Array.of(1, 2, 3),
        }),
        encodeInboxMessage(request(InboxType.FETCH)),
        encodeInboxMessage(request(InboxType.LIST)),
      ],
      [PREKEYS_PROTOCOL]: [
        encodePrekeysMessage(publication(2, 1_000)),
        encodePrekeysMessage({ type: PrekeysType.FETCH_BUNDLE, recipientId: f.recipient.recipientId }),
      ],
      [BILLS_PROTOCOL]: [
        encodeBillsMessage({
          type: BillsType.SUBMIT,
          bills: [
            signBill(f.recipient.billPrivateKey, {
              nodeId: nodeIdFromAddress(f.other.address),
              epoch,
              messageCount: 5n,
              byteCount: 5n,
            }),
            signBill(outsider, { nodeId: nodeIdFromAddress(f.op.address), epoch, messageCount: 5n, byteCount: 5n }),
          ],
        }),
        encodeBillsMessage({ type: BillsType.COLLECT, epoch }),
      ],
    };
  }

  it("survives them all, stores nothing from them, and keeps serving a well-formed client", async () => {
    // The well-formed client's state before: a bundle with no one-time prekeys.
    const [published] = await send(client, PREKEYS_PROTOCOL, [encodePrekeysMessage(publication(0, 1))]);
    expect(parsePrekeysMessage(published.type, published.body)).to.deep.equal({
      type: PrekeysType.PUBLISHED,
      oneTimePrekeysHeld: 0,
    });
    const seeds = await samples();
    const protocols = Object.keys(seeds) as ProtocolId[];
    const random = deterministicRandom("edge node fuzz");
    const int = (n: number) => new DataView(random(4).buffer).getUint32(0) % n;

    /** One garbage frame (or raw bytes) for `protocol`: random, or a mutated seed that differs from it. */
    const garbage = (protocol: ProtocolId): { frame?: Frame; raw?: Uint8Array } => {
      const seed = seeds[protocol][int(seeds[protocol].length)];
      const limit = MAX_FRAME_BYTES[protocol];
      switch (int(6)) {
        case 0: {
          const size = protocol === RELAY_PROTOCOL && int(2) === 0 ? 4096 : int(700);
          return { frame: { type: int(256), body: random(size) } };
        }
        case 1: {
          const body = seed.body.slice();
          for (let i = 0, n = 1 + int(3); i < n; i++) body[int(body.length)] ^= 1 + int(255);
          return { frame: { type: seed.type, body } };
        }
        case 2:
          return { frame: { type: seed.type, body: seed.body.slice(0, int(seed.body.length)) } };
        case 3: {
          const extra = random(1 + int(8));
          return { frame: { type: seed.type, body: new Uint8Array([...seed.body, ...extra]).subarray(0, limit - 1) } };
        }
        case 4: {
          let type = int(256);
          if (type === seed.type) type = (type + 1) % 256;
          return { frame: { type, body: seed.body } };
        }
        default: {
          // Raw bytes: a length prefix above the limit, zero, or a frame cut short.
          const kind = int(3);
          if (kind === 0) return { raw: encodePrefix(limit + 1 + int(1_000)) };
          if (kind === 1) return { raw: encodePrefix(0) };
          return { raw: encodeFrame(seed.type, seed.body, limit).subarray(0, 1 + int(8)) };
        }
      }
    };

    let sent = 0;
    let batches = 0;
    const storedBefore = node.inbox.store.totalMessages();
    const worker = async (): Promise<void> => {
      while (sent < FRAMES) {
        const protocol = protocols[batches++ % protocols.length];
        const chunks: Uint8Array[] = [];
        for (let i = 0; i < FRAMES_PER_STREAM && sent < FRAMES; i++, sent++) {
          const g = garbage(protocol);
          chunks.push(g.raw ?? encodeFrame(g.frame!.type, g.frame!.body, MAX_FRAME_BYTES[protocol]));
          if (g.raw !== undefined) break; // the stream is out of sync after raw bytes: start a new one
        }
        await sendRaw(protocol, chunks);
        // Every 150 batches (a few times a second): more often would be more than a client asks, and its own rate limit
        // (PREKEYS_PEER_RATE_LIMIT) would answer RATE_LIMITED.
        if (batches % 150 === 0) await wellFormedClientIsServed();
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await wellFormedClientIsServed();
    expect(sent).to.equal(FRAMES);

    // Nothing was stored from the garbage.
    expect(node.inbox.store.totalMessages()).to.equal(storedBefore);
    expect(node.prekeys.oneTimePrekeysHeld(f.recipient.address)).to.equal(0);
    expect(node.bills.count()).to.equal(0);
    expect(node.host.libp2p.status).to.equal("started");
    const errors = ["relay", "prekeys", "bills"].map((p) => node.metrics.errorCount(p));
    for (const n of errors) expect(n).to.be.greaterThan(100);
  });

  /** A bundle fetch is answered with the published bundle, and health answers. */
  async function wellFormedClientIsServed(): Promise<void> {
    const [answer] = await send(client, PREKEYS_PROTOCOL, [
      encodePrekeysMessage({ type: PrekeysType.FETCH_BUNDLE, recipientId: f.recipient.recipientId }),
    ]);
    const refusal = answer.type === ERROR_FRAME_TYPE ? parseErrorAnswer(answer.body).message : "";
    expect(answer.type, refusal).to.not.equal(ERROR_FRAME_TYPE);
    const bundle = parsePrekeysMessage(answer.type, answer.body);
    if (bundle.type !== PrekeysType.BUNDLE) expect.fail("expected a bundle");
    expect(bundle.bundle.identity.signing).to.deep.equal(f.recipient.identity.signing.publicKey);
    const health = await fetch(`http://127.0.0.1:${node.metricsPort}/health`);
    expect(health.status).to.equal(200);
  }
});

function encodePrefix(length: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, length, false);
  return out;
}
