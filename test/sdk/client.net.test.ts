import { expect } from "chai";
import { bytesToHex } from "@noble/hashes/utils.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Wallet, getAddress } from "ethers";
import type { Multiaddr } from "@multiformats/multiaddr" with { "resolution-mode": "import" };
import { createEdgeHost, type EdgeHost } from "../../node/host";
import { ClientHost, NodeRefusedError, NodeUnreachableError, type NodeAddress } from "../../sdk/net/host";
import { sendPacket } from "../../sdk/net/calls";
import { relayPublicKeyOfPeer, peerIdBytes } from "../../sdk/net/peerId";
import { WireErrorCode } from "../../sdk/wire/frame";
import { PACKET_BYTES, wrapPacket, type Hop } from "../../sdk/wire/onion";
import { generateX25519KeyPair } from "../../sdk/crypto/primitives";
import {
  ContentKind,
  EnvelopeError,
  InnerType,
  GROUP_KEY_HEADER_BYTES,
  MAX_CONTENT_BYTES,
  MAX_GROUP_MEMBERS_ON_WIRE,
  backupChunks,
  encodeContent,
  openEnvelope,
  parseBackupChunk,
  parseContent,
  sealEnvelope,
} from "../../sdk/client/envelope";
import { MAX_DELIVERY_ENVELOPE_BYTES } from "../../sdk/wire/messages";
import { concatBytes as concat } from "../../sdk/crypto/bytes";
import { SENDER_KEY_DISTRIBUTION_LENGTH } from "../../sdk/crypto/senderKeys";

const RECIPIENT = new Uint8Array(20).fill(0xab);

/** The hop of an edge host as a sender sees it: only the peer id, the relay key derived from it. */
const hopOf = (host: EdgeHost): Hop => {
  const id = host.libp2p.peerId.toString();
  return { peerId: peerIdBytes(id), relayPublicKey: relayPublicKeyOfPeer(id) };
};
const addressOf = (host: EdgeHost): NodeAddress => ({
  peerId: host.libp2p.peerId.toString(),
  multiaddrs: host.libp2p.getMultiaddrs().map((m) => m.toString()),
});

describe("sdk/net: the client's libp2p host against real edge hosts on 127.0.0.1", function () {
  this.timeout(30_000);
  let root: string;
  let entry: EdgeHost;
  let exit: EdgeHost;
  let client: ClientHost;
  const delivered: { recipientId: string; payload: Uint8Array }[] = [];

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "sending-client-net-"));
    exit = await createEdgeHost({
      dataDir: path.join(root, "exit"),
      relay: { onDeliver: (r, payload) => void delivered.push({ recipientId: bytesToHex(r), payload }) },
    });
    const peers = new Map<string, Multiaddr[]>([[exit.libp2p.peerId.toString(), exit.libp2p.getMultiaddrs()]]);
    entry = await createEdgeHost({ dataDir: path.join(root, "entry"), relay: { peers } });
    client = await ClientHost.create();
  });

  after(async () => {
    await Promise.all([client?.stop(), entry?.stop(), exit?.stop()]);
    await rm(root, { recursive: true, force: true });
  });

  it("listens nowhere and has a fresh peer id", async () => {
    expect(client.libp2p.getMultiaddrs()).to.deep.equal([]);
    const other = await ClientHost.create();
    expect(other.peerId).to.not.equal(client.peerId);
    await other.stop();
  });

  it("carries a packet wrapped to relay keys derived from peer ids alone through entry and exit", async () => {
    const payload = new TextEncoder().encode("sealed envelope stands here");
    await sendPacket(client, addressOf(entry), wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, payload));
    for (let i = 0; i < 50 && delivered.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(delivered).to.have.length(1);
    expect(delivered[0].recipientId).to.equal(bytesToHex(RECIPIENT));
    expect(delivered[0].payload).to.deep.equal(payload);
  });

  it("turns an error answer into NodeRefusedError with the wire code", async () => {
    const packet = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, new Uint8Array([1]));
    packet[200] ^= 1; // the entry's MAC fails
    const error = await sendPacket(client, addressOf(entry), packet).then(
      () => expect.fail("expected a refusal"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(NodeRefusedError);
    expect((error as NodeRefusedError).wireCode).to.equal(WireErrorCode.MALFORMED);
    expect((error as NodeRefusedError).peerId).to.equal(entry.libp2p.peerId.toString());
  });

  it("reports a node that is not listening as NodeUnreachableError", async () => {
    const gone = await createEdgeHost({ dataDir: path.join(root, "gone") });
    const address = addressOf(gone);
    await gone.stop();
    const packet = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, new Uint8Array([1]));
    const error = await sendPacket(client, address, packet, { timeoutMs: 3_000 }).then(
      () => expect.fail("expected unreachable"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(NodeUnreachableError);
  });

  it("rejects with the caller's reason when aborted, and refuses a packet of the wrong size", async () => {
    const controller = new AbortController();
    const reason = new Error("user left");
    controller.abort(reason);
    const packet = wrapPacket([hopOf(entry), hopOf(exit)], RECIPIENT, new Uint8Array([1]));
    const error = await sendPacket(client, addressOf(entry), packet, { signal: controller.signal }).then(
      () => expect.fail("expected an abort"),
      (e: unknown) => e,
    );
    expect(error).to.equal(reason);
    await sendPacket(client, addressOf(entry), new Uint8Array(PACKET_BYTES - 1)).then(
      () => expect.fail("expected a RangeError"),
      (e: unknown) => expect(e).to.be.instanceOf(RangeError),
    );
  });
});

describe("sdk/client/envelope: sealed sender and contents", () => {
  const recipient = generateX25519KeyPair();
  const sender = Wallet.createRandom().address;

  it("opens with the recipient's key only, and names the sender only inside the seal", () => {
    const body = new Uint8Array(300).fill(7);
    const sealed = sealEnvelope(recipient.publicKey, { type: InnerType.RATCHET, sender, body });
    expect(Buffer.from(sealed).includes(Buffer.from(sender.slice(2), "hex"))).to.equal(false);
    const opened = openEnvelope(sealed, recipient);
    expect(opened).to.deep.equal({ type: InnerType.RATCHET, sender, body });
    const other = generateX25519KeyPair();
    expect(() => openEnvelope(sealed, other)).to.throw(EnvelopeError, /does not open/);
    for (const offset of [1, 40, sealed.length - 1]) {
      const tampered = sealed.slice();
      tampered[offset] ^= 1;
      expect(() => openEnvelope(tampered, recipient)).to.throw(EnvelopeError);
    }
  });

  it("round-trips every content kind and refuses unknown or oversized ones", () => {
    const groupId = new Uint8Array(32).fill(3);
    const contents = [
      { kind: ContentKind.TEXT, text: "héllo" },
      { kind: ContentKind.BINARY, data: new Uint8Array([0, 1, 2]) },
      {
        kind: ContentKind.GROUP_KEY,
        groupId,
        admin: sender,
        version: 0xfffffffe,
        members: [sender],
        distribution: new Uint8Array(121).fill(9),
      },
      { kind: ContentKind.GROUP_MESSAGE, groupId, message: new Uint8Array(130).fill(5) },
      { kind: ContentKind.GROUP_KEY_REQUEST, groupId },
    ] as const;
    for (const content of contents) expect(parseContent(encodeContent(content))).to.deep.equal(content);
    expect(() => parseContent(new Uint8Array([0x7f]))).to.throw(EnvelopeError);
    expect(() => parseContent(new Uint8Array([ContentKind.TEXT, 0xff]))).to.throw(EnvelopeError, /UTF-8/);
    expect(() => encodeContent({ kind: ContentKind.BINARY, data: new Uint8Array(MAX_CONTENT_BYTES) })).to.throw(
      EnvelopeError,
    );
  });

  it("carries a group key's admin, version and members, and refuses a truncated one or a bad member count", () => {
    const groupId = new Uint8Array(32).fill(4);
    const members = [...Array(MAX_GROUP_MEMBERS_ON_WIRE).keys()].map((i) =>
      getAddress(`0x${(0xa0000 + i).toString(16).padStart(40, "0")}`),
    );
    const key = {
      kind: ContentKind.GROUP_KEY,
      groupId,
      admin: members[1],
      version: 7,
      members,
      distribution: new Uint8Array(SENDER_KEY_DISTRIBUTION_LENGTH).fill(2),
    } as const;
    const bytes = encodeContent(key);
    // The largest list fits one content, beside the header and the distribution.
    expect(bytes.length).to.equal(GROUP_KEY_HEADER_BYTES + 20 * members.length + SENDER_KEY_DISTRIBUTION_LENGTH);
    expect(bytes.length).to.be.at.most(MAX_CONTENT_BYTES);
    expect(parseContent(bytes)).to.deep.equal(key);
    // The layout: group id, admin, version big-endian, count, members, distribution.
    expect(bytesToHex(bytes.subarray(33, 53))).to.equal(members[1].slice(2).toLowerCase());
    expect([...bytes.subarray(53, 58)]).to.deep.equal([0, 0, 0, 7, members.length]);
    expect(() => encodeContent({ ...key, members: [...members, sender] })).to.throw(EnvelopeError, /group members/);
    expect(() => encodeContent({ ...key, members: [] })).to.throw(EnvelopeError, /group members/);
    expect(() => encodeContent({ ...key, version: 2 ** 32 })).to.throw(EnvelopeError, /version/);

    const small = encodeContent({ ...key, members: members.slice(0, 3) });
    for (const cut of [1, 20, 33, 40, 57, 58, 70, small.length - 1]) {
      expect(() => parseContent(small.subarray(0, cut)), `cut at ${cut}`).to.throw(EnvelopeError);
    }
    expect(() => parseContent(concat(small, new Uint8Array(1)))).to.throw(EnvelopeError);
    const withCount = (count: number) => {
      const b = small.slice();
      b[57] = count;
      return b;
    };
    expect(() => parseContent(withCount(0))).to.throw(EnvelopeError, /1 to/);
    expect(() => parseContent(withCount(2))).to.throw(EnvelopeError); // one member left over as distribution bytes
    expect(() => parseContent(withCount(4))).to.throw(EnvelopeError); // one member short
    expect(() => parseContent(withCount(255))).to.throw(EnvelopeError, /1 to/);
    const repeated = small.slice();
    repeated.set(repeated.subarray(58, 78), 78); // the second member is the first again
    expect(() => parseContent(repeated)).to.throw(EnvelopeError, /distinct/);
    const request = encodeContent({ kind: ContentKind.GROUP_KEY_REQUEST, groupId });
    expect(() => parseContent(request.subarray(0, 32))).to.throw(EnvelopeError, /key request/);
    expect(() => parseContent(concat(request, new Uint8Array(1)))).to.throw(EnvelopeError, /key request/);
  });

  it("splits a backup blob into chunks that fit a delivery and reassemble in order", () => {
    const blob = Uint8Array.from({ length: 9_000 }, (_, i) => i & 0xff);
    const chunks = backupChunks(blob);
    expect(chunks.length).to.equal(3);
    for (const c of chunks) expect(c.length).to.be.at.most(MAX_DELIVERY_ENVELOPE_BYTES);
    const parsed = chunks.map(parseBackupChunk);
    expect(parsed.map((c) => [c.index, c.count])).to.deep.equal([
      [0, 3],
      [1, 3],
      [2, 3],
    ]);
    expect(Buffer.concat(parsed.map((c) => c.data))).to.deep.equal(Buffer.from(blob));
  });
});
