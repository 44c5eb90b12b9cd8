import "../../node/polyfill";
import { expect } from "chai";
import fc from "fast-check";
import { Wallet, hexlify } from "ethers";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Libp2p, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { deployProtocolFixture } from "../fixtures/protocol";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import { messageHash, recoverStorePromiseSigner, slashingDomain } from "../../sdk/chain/slashing";
import { ClientIdentity, DidClient } from "../../sdk/client";
import { MemoryStorage } from "../../sdk/storage";
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  INBOX_MAX_FRAME_BYTES,
  INBOX_PROTOCOL,
  WireErrorCode,
  encodeErrorFrame,
  encodeFrame,
  parseErrorAnswer,
  type ErrorAnswer,
} from "../../sdk/wire/frame";
import {
  InboxType,
  REQUEST_WINDOW_MS,
  encodeInboxMessage,
  parseInboxMessage,
  signInboxRequest,
  type Delivery,
  type InboxMessage,
  type StoredEnvelope,
  type UnsignedInboxRequest,
} from "../../sdk/wire/messages";
import { INBOX_MIGRATIONS, NodeDatabaseError, openNodeDatabase, type NodeDatabase } from "../../node/db";
import { ChainDirectory, recipientIdOf } from "../../node/directory";
import { createLogger, setLogSink } from "../../node/log";
import { InboxError, InboxService, InboxStore, type InboxQuota } from "../../node/inbox";

/** A signed request without its stamp (recipient, time, nonce), per request type. */
type Unstamped<U = UnsignedInboxRequest> = U extends unknown ? Omit<U, "recipientId" | "timestamp" | "nonce"> : never;

/** One answer frame read back: an inbox message or an error answer. */
type Answer = { readonly message: InboxMessage } | { readonly error: ErrorAnswer };

const TTL = 3_600;
const envelopeOf = (n: number) => Uint8Array.from(randomBytes(n));
const delivery = (size = 200, ttlSeconds = TTL): Delivery => ({
  messageId: Uint8Array.from(randomBytes(16)),
  ttlSeconds,
  envelope: envelopeOf(size),
});

function parseAnswer(type: number, body: Uint8Array): Answer {
  return type === ERROR_FRAME_TYPE ? { error: parseErrorAnswer(body) } : { message: parseInboxMessage(type, body) };
}

const frameOf = (message: InboxMessage) => {
  const { type, body } = encodeInboxMessage(message);
  return encodeFrame(type, body, INBOX_MAX_FRAME_BYTES);
};

async function startHost(): Promise<Libp2p> {
  const [{ createLibp2p }, { tcp }, { noise }, { yamux }] = await Promise.all([
    import("libp2p"),
    import("@libp2p/tcp"),
    import("@chainsafe/libp2p-noise"),
    import("@chainsafe/libp2p-yamux"),
  ]);
  return createLibp2p({
    addresses: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  });
}

/** Writes `chunks` on a fresh inbox stream, closes the write side and reads every answer until the node closes. */
async function exchange(from: Libp2p, to: Libp2p, chunks: readonly Uint8Array[]): Promise<Answer[]> {
  const stream = await from.dialProtocol(to.peerId, INBOX_PROTOCOL, { signal: AbortSignal.timeout(5_000) });
  for (const chunk of chunks) if (!stream.send(chunk)) await stream.onDrain();
  await stream.close();
  const decoder = new FrameDecoder(INBOX_MAX_FRAME_BYTES);
  const answers: Answer[] = [];
  for await (const chunk of stream) for (const f of decoder.push(chunk)) answers.push(parseAnswer(f.type, f.body));
  decoder.end();
  return answers;
}

/** A subscription stream read frame by frame. */
class Subscriber {
  private readonly decoder = new FrameDecoder(INBOX_MAX_FRAME_BYTES);
  private readonly buffered: Answer[] = [];
  private readonly chunks: AsyncIterator<unknown>;

  constructor(readonly stream: Stream) {
    this.chunks = stream[Symbol.asyncIterator]();
  }

  /** The next answer frame; fails the test after 5 s instead of hanging. */
  async next(): Promise<Answer> {
    const deadline = AbortSignal.timeout(5_000);
    while (this.buffered.length === 0) {
      const step = await Promise.race([
        this.chunks.next(),
        new Promise<never>((_, reject) =>
          deadline.addEventListener("abort", () => reject(new Error("no frame within 5 s"))),
        ),
      ]);
      if (step.done === true) throw new Error("subscription stream ended");
      for (const f of this.decoder.push(step.value as Uint8Array)) this.buffered.push(parseAnswer(f.type, f.body));
    }
    return this.buffered.shift() as Answer;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (!this.stream.send(frame)) await this.stream.onDrain();
  }

  /** Closes the write side and reads the rest until the node closes its side. */
  async end(): Promise<Answer[]> {
    await this.stream.close();
    const rest = [...this.buffered];
    for (;;) {
      const step = await this.chunks.next();
      if (step.done === true) break;
      for (const f of this.decoder.push(step.value as Uint8Array)) rest.push(parseAnswer(f.type, f.body));
    }
    return rest;
  }
}

function messagesOf(answer: Answer): Extract<InboxMessage, { type: 4 }>["messages"] {
  if (!("message" in answer) || answer.message.type !== InboxType.MESSAGES) {
    expect.fail(
      `expected a MESSAGES answer, got ${JSON.stringify("error" in answer ? answer.error : answer.message.type)}`,
    );
  }
  return answer.message.messages;
}

function errorCodeOf(answer: Answer | undefined): number {
  if (answer === undefined || !("error" in answer))
    return expect.fail(`expected an error answer, got ${String(answer)}`);
  return answer.error.code;
}

describe("node/inbox: the persistent offline inbox on real libp2p hosts, chain and sqlite", function () {
  this.timeout(60_000);

  let root: string;
  let clock = Date.now();
  const now = () => clock;
  let ctx: Awaited<ReturnType<typeof deployProtocolFixture>>;
  let hosts: { a: Libp2p; b: Libp2p; c: Libp2p; client: Libp2p; fuzz: Libp2p };
  const nodeSigners = { a: Wallet.createRandom(), b: Wallet.createRandom(), c: Wallet.createRandom() };
  let operators: { a: string; b: string; c: string };
  const dbs: Record<"a" | "b" | "c", NodeDatabase> = {} as Record<"a" | "b" | "c", NodeDatabase>;
  const services: Record<"a" | "b" | "c", InboxService> = {} as Record<"a" | "b" | "c", InboxService>;
  let alice: ClientIdentity; // home nodes a, b
  let bob: ClientIdentity; // home nodes c, a
  let carol: string; // no DID
  let promiseDomain: ReturnType<typeof slashingDomain>;
  const C_QUOTA: InboxQuota = { maxMessages: 2, maxBytes: 4_000 };

  const peerIdOf = async (operator: string) => (await ctx.registry.node(operator)).peerId || undefined;

  function makeService(key: "a" | "b" | "c", host: Libp2p, db: NodeDatabase): InboxService {
    return new InboxService(host, {
      db,
      directory: new ChainDirectory(ctx.didRegistry, { fromBlock: ctx.deployment.startBlock }),
      nodeSigner: nodeSigners[key],
      operator: operators[key],
      promiseDomain,
      peerIdOf,
      quota: key === "c" ? C_QUOTA : undefined,
      now,
      logger: createLogger(`inbox:${key}`, "error"), // the refusals provoked here would log warnings
    });
  }

  /** A signed request frame for `node`, by `identity` (alice unless said otherwise). */
  function signed(
    node: Libp2p,
    request: Unstamped & {
      recipientId?: Uint8Array;
      timestamp?: number;
    },
    identity: ClientIdentity = alice,
  ): Uint8Array {
    const full = {
      recipientId: recipientIdOf(identity.address),
      timestamp: clock,
      nonce: Uint8Array.from(randomBytes(16)),
      ...request,
    } as UnsignedInboxRequest;
    const message = signInboxRequest(node.peerId.toMultihash().bytes, full, identity.identityKeyPair.signing.secretKey);
    return frameOf(message as InboxMessage);
  }

  const fetchFrame = (node: Libp2p, limit = 16, identity?: ClientIdentity) =>
    signed(node, { type: InboxType.FETCH, limit }, identity);

  async function fetchAll(node: Libp2p, identity: ClientIdentity = alice) {
    const [answer] = await exchange(hosts.client, node, [fetchFrame(node, 16, identity)]);
    return messagesOf(answer);
  }

  async function ackAll(node: Libp2p, identity: ClientIdentity = alice): Promise<void> {
    const held = await fetchAll(node, identity);
    if (held.length === 0) return;
    const [answer] = await exchange(hosts.client, node, [
      signed(node, { type: InboxType.ACK, messageIds: held.map((m) => m.messageId) }, identity),
    ]);
    expect(answer).to.deep.equal({ message: { type: InboxType.ACKED, deleted: held.length } });
  }

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "sending-inbox-"));
    ctx = await deployProtocolFixture();
    promiseDomain = slashingDomain(ctx.deployment.chainId, ctx.deployment.contracts.Slashing);
    const [a, b, c, client, fuzz] = await Promise.all([
      startHost(),
      startHost(),
      startHost(),
      startHost(),
      startHost(),
    ]);
    hosts = { a, b, c, client, fuzz };
    const [, opA, opB, opC, aliceSigner, bobSigner, carolSigner] = ctx.signers;
    operators = { a: opA.address, b: opB.address, c: opC.address };
    for (const [operator, host, signer] of [
      [opA, a, nodeSigners.a],
      [opB, b, nodeSigners.b],
      [opC, c, nodeSigners.c],
    ] as const) {
      const stake = 1_000n * TOKEN;
      await ctx.token.transfer(operator.address, stake);
      await ctx.token.connect(operator).approve(await ctx.registry.getAddress(), stake);
      const addrs = host.getMultiaddrs().map((m) => m.toString());
      await ctx.registry
        .connect(operator)
        .register(NodeRole.Edge, host.peerId.toString(), addrs, signer.address, 0, stake);
    }
    // Discovery's part: every host knows the others' addresses.
    for (const from of Object.values(hosts)) {
      for (const to of [a, b, c]) {
        if (from !== to) await from.peerStore.merge(to.peerId, { multiaddrs: to.getMultiaddrs() });
      }
    }
    const open = (signer: typeof aliceSigner) =>
      ClientIdentity.open({
        signer,
        storage: new MemoryStorage(),
        chainId: ctx.deployment.chainId,
        didRegistry: ctx.deployment.contracts.DidRegistry,
        oneTimePrekeys: 1,
      });
    alice = await open(aliceSigner);
    bob = await open(bobSigner);
    carol = carolSigner.address;
    await DidClient.connect(ctx.deployment, aliceSigner).register(alice, { homeNodes: [opA.address, opB.address] });
    await DidClient.connect(ctx.deployment, bobSigner).register(bob, { homeNodes: [opC.address, opA.address] });

    for (const key of ["a", "b", "c"] as const) {
      dbs[key] = openNodeDatabase(path.join(root, key, "node.db"));
      services[key] = makeService(key, hosts[key], dbs[key]);
      await services[key].start();
    }
  });

  after(async () => {
    for (const key of ["a", "b", "c"] as const) {
      await services[key]?.stop();
      dbs[key]?.close();
    }
    await Promise.all(Object.values(hosts ?? {}).map((h) => h.stop()));
    await rm(root, { recursive: true, force: true });
  });

  it("stores an exit delivery with a StorePromise that recovers to the node's registered signer", async () => {
    const d = delivery(300);
    const result = await services.a.accept(alice.address, d);
    expect(result.duplicate).to.equal(false);
    expect(result.expiry).to.equal(Math.floor(clock / 1000) + TTL);
    const promise = { messageHash: messageHash(d.envelope), recipient: alice.address, expiry: BigInt(result.expiry) };
    const signer = recoverStorePromiseSigner(promiseDomain, promise, hexlify(result.promiseSignature));
    expect(signer).to.equal(nodeSigners.a.address);
    expect(signer).to.equal(await ctx.registry.signerOf(operators.a));
    await result.replicated;
  });

  it("replicates to the recipient's other home node, whose STORED promise recovers to that node's signer", async () => {
    const d = delivery(500);
    const result = await services.a.accept(recipientIdOf(alice.address), d);
    const replicas = await result.replicated;
    expect(replicas.map((r) => [r.operator, r.ok])).to.deep.equal([[operators.b, true]]);
    const stored = replicas[0].stored!;
    const promise = { messageHash: messageHash(d.envelope), recipient: alice.address, expiry: BigInt(stored.expiry) };
    expect(recoverStorePromiseSigner(promiseDomain, promise, hexlify(stored.promiseSignature))).to.equal(
      nodeSigners.b.address,
    );
    const onB = await fetchAll(hosts.b);
    expect(onB.map((m) => hexlify(m.messageId))).to.include(hexlify(d.messageId));
    expect(onB.find((m) => hexlify(m.messageId) === hexlify(d.messageId))!.envelope).to.deep.equal(d.envelope);
  });

  it("round-trips store, fetch, list and ack; an acknowledged message is gone", async () => {
    await ackAll(hosts.a);
    const sent = [delivery(10), delivery(3_000), delivery(1)];
    for (const d of sent) {
      await services.a.accept(alice.address, d);
      clock += 1; // distinct stored times: fetch order is by time
    }
    const held = await fetchAll(hosts.a);
    expect(held.map((m) => hexlify(m.envelope))).to.deep.equal(sent.map((d) => hexlify(d.envelope)));
    const [listing] = await exchange(hosts.client, hosts.a, [signed(hosts.a, { type: InboxType.LIST, limit: 2 })]);
    expect(listing).to.deep.equal({
      message: {
        type: InboxType.LISTING,
        entries: held
          .slice(0, 2)
          .map((m) => ({ messageId: m.messageId, storedAt: m.storedAt, size: m.envelope.length })),
      },
    });
    const [limited] = await exchange(hosts.client, hosts.a, [fetchFrame(hosts.a, 1)]);
    expect(messagesOf(limited).map((m) => hexlify(m.messageId))).to.deep.equal([hexlify(sent[0].messageId)]);

    const [acked] = await exchange(hosts.client, hosts.a, [
      signed(hosts.a, { type: InboxType.ACK, messageIds: [sent[0].messageId, sent[1].messageId, sent[0].messageId] }),
    ]);
    expect(acked).to.deep.equal({ message: { type: InboxType.ACKED, deleted: 2 } });
    expect((await fetchAll(hosts.a)).map((m) => hexlify(m.messageId))).to.deep.equal([hexlify(sent[2].messageId)]);
    await ackAll(hosts.a);
    expect(await fetchAll(hosts.a)).to.deep.equal([]);
  });

  it("deduplicates by message id: the same delivery again stores nothing and returns the same promise", async () => {
    const d = delivery(100);
    const first = await services.a.accept(alice.address, d);
    await first.replicated;
    const before = services.a.store.totalMessages();
    const again = await services.a.accept(alice.address, { ...d, envelope: d.envelope.slice() });
    expect(again.duplicate).to.equal(true);
    expect(again.promiseSignature).to.deep.equal(first.promiseSignature);
    expect(await again.replicated).to.deep.equal([]);
    expect(services.a.store.totalMessages()).to.equal(before);
    // The same id with another envelope is refused, not answered with the held envelope's promise.
    const conflict = await services.a.accept(alice.address, { ...d, envelope: envelopeOf(101) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(conflict).to.be.instanceOf(InboxError);
    expect((conflict as InboxError).code).to.equal("INBOX_ID_CONFLICT");
    expect(services.a.store.totalMessages()).to.equal(before);
    await ackAll(hosts.a);
    await ackAll(hosts.b);
  });

  it("pushes the backlog first on SUBSCRIBE, then each new message live; ACK works on the same stream", async () => {
    const backlog = [delivery(50), delivery(60)];
    for (const d of backlog) {
      await (
        await services.a.accept(alice.address, d)
      ).replicated;
      clock += 1;
    }
    const stream = await hosts.client.dialProtocol(hosts.a.peerId, INBOX_PROTOCOL);
    const sub = new Subscriber(stream);
    await sub.send(signed(hosts.a, { type: InboxType.SUBSCRIBE }));
    const first = messagesOf(await sub.next());
    expect(first.map((m) => hexlify(m.messageId))).to.deep.equal(backlog.map((d) => hexlify(d.messageId)));
    expect(services.a.subscriberCount(alice.address)).to.equal(1);

    const live = delivery(70);
    const liveResult = await services.a.accept(alice.address, live);
    const pushed = messagesOf(await sub.next());
    expect(pushed.map((m) => hexlify(m.envelope))).to.deep.equal([hexlify(live.envelope)]);

    await sub.send(signed(hosts.a, { type: InboxType.ACK, messageIds: [...backlog, live].map((d) => d.messageId) }));
    expect(await sub.next()).to.deep.equal({ message: { type: InboxType.ACKED, deleted: 3 } });
    // Store-then-push: a pushed message stays stored until acknowledged; these were.
    expect(await fetchAll(hosts.a)).to.deep.equal([]);

    // A message replicated in with STORE is pushed to a subscriber on the replica too.
    await liveResult.replicated;
    const streamB = await hosts.client.dialProtocol(hosts.b.peerId, INBOX_PROTOCOL);
    const subB = new Subscriber(streamB);
    await subB.send(signed(hosts.b, { type: InboxType.SUBSCRIBE }));
    const backlogB = messagesOf(await subB.next());
    const viaReplica = delivery(80);
    await (
      await services.a.accept(alice.address, viaReplica)
    ).replicated;
    expect(messagesOf(await subB.next()).map((m) => hexlify(m.messageId))).to.deep.equal([
      hexlify(viaReplica.messageId),
    ]);
    // a's own subscriber got it live as well, once.
    expect(messagesOf(await sub.next()).map((m) => hexlify(m.messageId))).to.deep.equal([
      hexlify(viaReplica.messageId),
    ]);
    expect(await subB.end()).to.deep.equal([]);
    expect(await sub.end()).to.deep.equal([]);
    expect(services.a.subscriberCount(alice.address)).to.equal(0);
    expect(services.b.subscriberCount(alice.address)).to.equal(0);
    // b's backlog held the replicas of what a stored before (acknowledged on a only).
    expect(backlogB.map((m) => hexlify(m.messageId))).to.include.members(
      [...backlog, live].map((d) => hexlify(d.messageId)),
    );
    await ackAll(hosts.a);
    await ackAll(hosts.b);
  });

  it("pages a backlog above 16 messages over several MESSAGES frames, oldest first, nothing twice", async () => {
    const backlog = Array.from({ length: 20 }, () => delivery(16));
    for (const d of backlog) {
      await (
        await services.a.accept(alice.address, d)
      ).replicated;
      clock += 1;
    }
    const sub = new Subscriber(await hosts.client.dialProtocol(hosts.a.peerId, INBOX_PROTOCOL));
    await sub.send(signed(hosts.a, { type: InboxType.SUBSCRIBE }));
    const first = messagesOf(await sub.next());
    const second = messagesOf(await sub.next());
    expect([first.length, second.length]).to.deep.equal([16, 4]);
    expect([...first, ...second].map((m) => hexlify(m.messageId))).to.deep.equal(
      backlog.map((d) => hexlify(d.messageId)),
    );
    expect(await sub.end()).to.deep.equal([]);
    await ackAll(hosts.a);
    await ackAll(hosts.a);
    await ackAll(hosts.b);
    await ackAll(hosts.b);
    expect(await fetchAll(hosts.a)).to.deep.equal([]);
  });

  it("pages FETCH and LIST after a cursor: the messages after it in stored time then id, after an ack of it too", async () => {
    await ackAll(hosts.a);
    const backlog = Array.from({ length: 21 }, () => delivery(16));
    for (const [i, d] of backlog.entries()) {
      await (
        await services.a.accept(alice.address, d)
      ).replicated;
      if (i % 3 === 2) clock += 1; // three messages a millisecond: the id orders them
    }
    const fetchAfter = async (after?: { storedAt: number; messageId: Uint8Array }, limit = 16) => {
      const frame = signed(hosts.a, { type: InboxType.FETCH, limit, ...(after && { after }) });
      return messagesOf((await exchange(hosts.client, hosts.a, [frame]))[0]);
    };
    const first = await fetchAfter();
    const all: StoredEnvelope[] = [];
    let after: { storedAt: number; messageId: Uint8Array } | undefined;
    for (let pages = 0; pages < 4; pages++) {
      const page = await fetchAfter(after, 8);
      all.push(...page);
      if (page.length < 8) break;
      after = { storedAt: page[7].storedAt, messageId: page[7].messageId };
    }
    const sorted = [...all].sort((x, y) => x.storedAt - y.storedAt || Buffer.compare(x.messageId, y.messageId));
    expect(all.map((m) => hexlify(m.messageId))).to.deep.equal(sorted.map((m) => hexlify(m.messageId)));
    expect(new Set(all.map((m) => hexlify(m.messageId)))).to.deep.equal(
      new Set(backlog.map((d) => hexlify(d.messageId))),
    );
    expect(all.slice(0, 16)).to.deep.equal(first); // the cursor-less FETCH starts at the oldest
    // The cursor's own message acknowledged (gone): the next page still starts right after where it was.
    const cut = all[9];
    const [acked] = await exchange(hosts.client, hosts.a, [
      signed(hosts.a, { type: InboxType.ACK, messageIds: [cut.messageId] }),
    ]);
    expect(acked).to.deep.equal({ message: { type: InboxType.ACKED, deleted: 1 } });
    const rest = await fetchAfter({ storedAt: cut.storedAt, messageId: cut.messageId });
    expect(rest.map((m) => hexlify(m.messageId))).to.deep.equal(all.slice(10).map((m) => hexlify(m.messageId)));
    const [listing] = await exchange(hosts.client, hosts.a, [
      signed(hosts.a, {
        type: InboxType.LIST,
        limit: 255,
        after: { storedAt: all[4].storedAt, messageId: all[4].messageId },
      }),
    ]);
    expect(listing).to.deep.equal({
      message: {
        type: InboxType.LISTING,
        entries: [...all.slice(5, 9), ...all.slice(10)].map((m) => ({
          messageId: m.messageId,
          storedAt: m.storedAt,
          size: m.envelope.length,
        })),
      },
    });
    for (const host of [hosts.a, hosts.a, hosts.b, hosts.b]) await ackAll(host);
    expect(await fetchAll(hosts.a)).to.deep.equal([]);
  });

  it("refuses unsigned, wrongly signed, misdirected and unknown-recipient requests with UNAUTHORIZED", async () => {
    await services.a.accept(alice.address, delivery(40));
    const aliceId = recipientIdOf(alice.address);
    const answers = await exchange(hosts.client, hosts.a, [
      // bob signs a fetch of alice's inbox
      signed(hosts.a, { type: InboxType.FETCH, limit: 16, recipientId: aliceId }, bob),
      // alice's fetch signed for node b, sent to node a
      signed(hosts.b, { type: InboxType.FETCH, limit: 16 }),
      // a subscription signed by bob for alice
      signed(hosts.a, { type: InboxType.SUBSCRIBE, recipientId: aliceId }, bob),
      // zero signature
      frameOf({
        type: InboxType.FETCH,
        recipientId: aliceId,
        timestamp: clock,
        nonce: Uint8Array.from(randomBytes(16)),
        limit: 1,
        signature: new Uint8Array(64),
      }),
      // carol has no DID, so no signing key
      frameOf({
        type: InboxType.LIST,
        recipientId: recipientIdOf(carol),
        timestamp: clock,
        nonce: Uint8Array.from(randomBytes(16)),
        limit: 1,
        signature: new Uint8Array(64),
      }),
      // a STORE from a peer that is not another home node of the recipient
      frameOf({ type: InboxType.STORE, recipientId: aliceId, ...delivery(10) }),
    ]);
    expect(answers.map(errorCodeOf)).to.deep.equal(Array(6).fill(WireErrorCode.UNAUTHORIZED));

    // Node c is no home node of alice: STORE and accept are refused with NOT_FOUND.
    const [store] = await exchange(hosts.client, hosts.c, [
      frameOf({ type: InboxType.STORE, recipientId: aliceId, ...delivery(10) }),
    ]);
    expect(errorCodeOf(store)).to.equal(WireErrorCode.NOT_FOUND);
    try {
      await services.c.accept(alice.address, delivery(10));
      expect.fail("expected InboxError");
    } catch (error) {
      expect(error).to.be.instanceOf(InboxError);
      expect((error as InboxError).code).to.equal("INBOX_NOT_HOME_NODE");
      expect((error as InboxError).wireCode).to.equal(WireErrorCode.NOT_FOUND);
    }
    await ackAll(hosts.a);
    await ackAll(hosts.b);
  });

  it("answers a peer's signed requests beyond its rate with RATE_LIMITED, unchecked, and keeps serving other peers", async () => {
    const host = await startHost();
    const db = openNodeDatabase(path.join(root, "limited", "node.db"));
    const limited = new InboxService(host, {
      db,
      directory: new ChainDirectory(ctx.didRegistry, { fromBlock: ctx.deployment.startBlock }),
      nodeSigner: nodeSigners.a,
      operator: operators.a,
      promiseDomain,
      peerIdOf,
      now,
      limits: { peerRateLimit: { perSecond: 0.001, burst: 2 } },
      logger: createLogger("inbox:limited", "error"),
    });
    await limited.start();
    try {
      for (const from of [hosts.client, hosts.fuzz]) {
        await from.peerStore.merge(host.peerId, { multiaddrs: host.getMultiaddrs() });
      }
      const answers = await exchange(hosts.client, host, [fetchFrame(host), fetchFrame(host), fetchFrame(host)]);
      expect(messagesOf(answers[0])).to.deep.equal([]);
      expect(messagesOf(answers[1])).to.deep.equal([]);
      expect(errorCodeOf(answers[2])).to.equal(WireErrorCode.RATE_LIMITED);
      // Limited before the signature is checked: a request signed by nobody gets the same answer, not UNAUTHORIZED.
      const [unsigned] = await exchange(hosts.client, host, [
        frameOf({
          type: InboxType.LIST,
          recipientId: recipientIdOf(alice.address),
          timestamp: clock,
          nonce: Uint8Array.from(randomBytes(16)),
          limit: 1,
          signature: new Uint8Array(64),
        }),
      ]);
      expect(errorCodeOf(unsigned)).to.equal(WireErrorCode.RATE_LIMITED);
      const [other] = await exchange(hosts.fuzz, host, [fetchFrame(host)]);
      expect(messagesOf(other)).to.deep.equal([]);
    } finally {
      await limited.stop();
      db.close();
      await host.stop();
    }
  });

  it("refuses a replayed request and one outside the time window with REPLAYED", async () => {
    const fetch = fetchFrame(hosts.a);
    const [first] = await exchange(hosts.client, hosts.a, [fetch]);
    messagesOf(first);
    const [again] = await exchange(hosts.client, hosts.a, [fetch]);
    expect(errorCodeOf(again)).to.equal(WireErrorCode.REPLAYED);
    const stale = signed(hosts.a, { type: InboxType.FETCH, limit: 1, timestamp: clock - REQUEST_WINDOW_MS - 1 });
    const early = signed(hosts.a, { type: InboxType.FETCH, limit: 1, timestamp: clock + REQUEST_WINDOW_MS + 1 });
    const answers = await exchange(hosts.client, hosts.a, [stale, early]);
    expect(answers.map(errorCodeOf)).to.deep.equal([WireErrorCode.REPLAYED, WireErrorCode.REPLAYED]);
  });

  it("refuses a store above the recipient's quota of messages or bytes, locally and as a replica (QUOTA_EXCEEDED)", async () => {
    await services.c.accept(bob.address, delivery(3_000)); // 1 message, 3,000 of 4,000 bytes
    const expectQuota = async (d: Delivery) => {
      try {
        await services.c.accept(bob.address, d);
        expect.fail("expected INBOX_QUOTA_EXCEEDED");
      } catch (error) {
        expect((error as InboxError).code).to.equal("INBOX_QUOTA_EXCEEDED");
        expect((error as InboxError).wireCode).to.equal(WireErrorCode.QUOTA_EXCEEDED);
      }
    };
    await expectQuota(delivery(1_500)); // bytes
    await services.c.accept(bob.address, delivery(500)); // 2 messages, 3,500 bytes
    await expectQuota(delivery(10)); // count
    // Node a is bob's other home node: its replica to c is refused with the wire answer.
    const viaA = await services.a.accept(bob.address, delivery(10));
    const [replica] = await viaA.replicated;
    expect(replica.operator).to.equal(operators.c);
    expect(replica.ok).to.equal(false);
    expect(replica.error).to.match(new RegExp(`^error ${WireErrorCode.QUOTA_EXCEEDED}:`));
    // Acknowledging frees room.
    await ackAll(hosts.c, bob);
    await services.c.accept(bob.address, delivery(10));
    await ackAll(hosts.c, bob);
    await ackAll(hosts.a, bob);
  });

  it("never serves an expired message and sweeps it (injected clock, no sleeping)", async () => {
    const short = delivery(20, 60);
    const long = delivery(20, TTL);
    await (
      await services.a.accept(alice.address, short)
    ).replicated;
    await (
      await services.a.accept(alice.address, long)
    ).replicated;
    expect((await fetchAll(hosts.a)).length).to.equal(2);
    const total = services.a.store.totalMessages();
    clock += 61_000;
    expect((await fetchAll(hosts.a)).map((m) => hexlify(m.messageId))).to.deep.equal([hexlify(long.messageId)]);
    const [listing] = await exchange(hosts.client, hosts.a, [signed(hosts.a, { type: InboxType.LIST, limit: 10 })]);
    expect(
      "message" in listing && listing.message.type === InboxType.LISTING && listing.message.entries.length,
    ).to.equal(1);
    expect(services.a.store.totalMessages()).to.equal(total);
    const swept = services.a.sweep();
    expect(swept.messages).to.equal(1);
    expect(services.a.store.totalMessages()).to.equal(total - 1);
    // An expired id may be stored again: it is a new message then.
    const renewed = await services.a.accept(alice.address, short);
    expect(renewed.duplicate).to.equal(false);
    await renewed.replicated;
    // Request nonces are swept once their window has passed.
    clock += REQUEST_WINDOW_MS + 61_000 + TTL * 1000;
    expect(services.a.sweep().nonces).to.be.greaterThan(0);
    expect(await fetchAll(hosts.a)).to.deep.equal([]);
  });

  it("keeps everything across closing and reopening the database", async () => {
    const kept = [delivery(123), delivery(456)];
    for (const d of kept) await (await services.a.accept(alice.address, d)).replicated;
    const before = await fetchAll(hosts.a);
    const migrations = dbs.a.appliedMigrations();
    await services.a.stop();
    dbs.a.close();
    dbs.a = openNodeDatabase(path.join(root, "a", "node.db"));
    expect(dbs.a.appliedMigrations()).to.deep.equal(migrations);
    services.a = makeService("a", hosts.a, dbs.a);
    await services.a.start();
    const after = await fetchAll(hosts.a);
    expect(after).to.deep.equal(before);
    expect(after.map((m) => hexlify(m.messageId))).to.include.members(kept.map((d) => hexlify(d.messageId)));
    // The nonce cache survived too: a request seen before the restart is still a replay.
    const fetch = fetchFrame(hosts.a);
    await exchange(hosts.client, hosts.a, [fetch]);
    await services.a.stop();
    dbs.a.close();
    dbs.a = openNodeDatabase(path.join(root, "a", "node.db"));
    services.a = makeService("a", hosts.a, dbs.a);
    await services.a.start();
    expect((await exchange(hosts.client, hosts.a, [fetch])).map(errorCodeOf)).to.deep.equal([WireErrorCode.REPLAYED]);
    await ackAll(hosts.a);
    await ackAll(hosts.b);
  });

  it("loses no acknowledged store when the process is killed with SIGKILL", async () => {
    const file = path.join(root, "killed", "node.db");
    const repo = path.resolve(__dirname, "../..");
    const script = `
      const { openNodeDatabase } = require(${JSON.stringify(path.join(repo, "node/db.ts"))});
      const { InboxStore } = require(${JSON.stringify(path.join(repo, "node/inbox.ts"))});
      const { randomBytes } = require("node:crypto");
      const store = new InboxStore(openNodeDatabase(${JSON.stringify(file)}));
      const recipient = Buffer.alloc(20, 7);
      const quota = { maxMessages: 1e9, maxBytes: 1e12 };
      for (let i = 0; ; i++) {
        const messageId = randomBytes(16);
        const now = Date.now();
        const r = store.insert({ recipientId: recipient, messageId, storedAt: now, expiresAt: now + 3.6e6,
          envelope: randomBytes(100 + (i % 900)), promiseSignature: randomBytes(65) }, quota, now);
        if (r.outcome !== "stored") throw new Error("not stored");
        process.stdout.write(messageId.toString("hex") + "\\n");
      }
    `;
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], {
      cwd: repo,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const acknowledged: string[] = [];
    await new Promise<void>((resolve, reject) => {
      let partial = "";
      child.on("error", reject);
      child.on("exit", () => resolve());
      child.stdout.on("data", (chunk: Buffer) => {
        const lines = (partial + chunk.toString()).split("\n");
        partial = lines.pop() ?? "";
        acknowledged.push(...lines);
        if (acknowledged.length >= 200 && child.exitCode === null && !child.killed) child.kill("SIGKILL");
      });
    });
    expect(child.signalCode).to.equal("SIGKILL");
    expect(acknowledged.length).to.be.at.least(200);
    const db = openNodeDatabase(file);
    try {
      const store = new InboxStore(db);
      const held = new Set(store.page(new Uint8Array(20).fill(7), Date.now(), 1e6).map((r) => hexlify(r.messageId)));
      for (const id of acknowledged) expect(held.has("0x" + id), `message ${id}`).to.equal(true);
    } finally {
      db.close();
    }
  });

  it("fuzz: 3,000 random and mutated frames never crash the service nor store anything; clients are still served", async function () {
    this.timeout(120_000);
    const aliceId = recipientIdOf(alice.address);
    await services.a.accept(alice.address, delivery(33));
    const storedBefore = services.a.store.totalMessages();
    const stamp = () => ({ recipientId: aliceId, timestamp: clock, nonce: Uint8Array.from(randomBytes(16)) });
    const node = hosts.a.peerId.toMultihash().bytes;
    const key = alice.identityKeyPair.signing.secretKey;
    const seeds: InboxMessage[] = [
      { type: InboxType.STORE, recipientId: aliceId, ...delivery(64) },
      { type: InboxType.STORE, recipientId: recipientIdOf(bob.address), ...delivery(64) },
      signInboxRequest(node, { type: InboxType.FETCH, ...stamp(), limit: 16 }, key),
      signInboxRequest(node, { type: InboxType.LIST, ...stamp(), limit: 100 }, key),
      signInboxRequest(node, { type: InboxType.ACK, ...stamp(), messageIds: [delivery().messageId] }, key),
      signInboxRequest(node, { type: InboxType.SUBSCRIBE, ...stamp() }, key),
      { type: InboxType.STORED, messageId: delivery().messageId, expiry: 1, promiseSignature: new Uint8Array(65) },
      {
        type: InboxType.MESSAGES,
        messages: [{ messageId: delivery().messageId, storedAt: clock, envelope: envelopeOf(9) }],
      },
      { type: InboxType.ACKED, deleted: 1 },
      { type: InboxType.LISTING, entries: [] },
    ];
    const encoded = seeds.map((m) => encodeInboxMessage(m));
    const item = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant("random" as const),
          type: fc.nat(255),
          body: fc.uint8Array({ maxLength: 400 }),
        }),
      },
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant("mutated" as const),
          seed: fc.nat(encoded.length - 1),
          type: fc.option(fc.nat(255), { nil: undefined }),
          flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
          cut: fc.option(fc.nat(), { nil: undefined }),
        }),
      },
      // Raw bytes usually break the framing (the node answers and closes the stream): they end a batch.
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant("raw" as const),
          bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({ kind: fc.constant("error" as const), code: fc.integer({ min: 1, max: 9 }) }),
      },
    );
    const items = fc.sample(item, { numRuns: 3_000, seed: 0x5e4d });
    const chunkOf = (x: (typeof items)[number]): Uint8Array => {
      if (x.kind === "random") return encodeFrame(x.type, x.body, INBOX_MAX_FRAME_BYTES);
      if (x.kind === "raw") return x.bytes;
      if (x.kind === "error")
        return encodeErrorFrame({ code: x.code as WireErrorCode, message: "x" }, INBOX_MAX_FRAME_BYTES);
      const base = encoded[x.seed];
      let body = base.body.slice();
      for (const [at, v] of x.flips) if (body.length > 0) body[at % body.length] ^= v;
      if (x.cut !== undefined) body = body.subarray(0, x.cut % (body.length + 1));
      return encodeFrame(x.type ?? base.type, body, INBOX_MAX_FRAME_BYTES);
    };
    let answers = 0;
    const codes = new Set<number>();
    const framed = items.filter((x) => x.kind !== "raw");
    const raw = items.filter((x) => x.kind === "raw");
    const batches: Uint8Array[][] = [];
    for (let i = 0; i < framed.length; i += 30) batches.push(framed.slice(i, i + 30).map(chunkOf));
    raw.forEach((x, i) => (i < batches.length ? batches[i].push(chunkOf(x)) : batches.push([chunkOf(x)])));
    for (const batch of batches) {
      const got = await exchange(hosts.fuzz, hosts.a, batch);
      answers += got.length;
      for (const a of got) if ("error" in a) codes.add(a.error.code);
    }
    expect(answers).to.be.at.least(framed.length);
    for (const code of [WireErrorCode.MALFORMED, WireErrorCode.UNSUPPORTED, WireErrorCode.UNAUTHORIZED]) {
      expect(codes.has(code), `error code ${code} seen`).to.equal(true);
    }
    expect(services.a.store.totalMessages()).to.equal(storedBefore);
    expect(services.a.isStarted()).to.equal(true);
    // A well-formed client is still served, and the relay exit still stores.
    expect((await fetchAll(hosts.a)).length).to.equal(1);
    const after = delivery(44);
    await (
      await services.a.accept(alice.address, after)
    ).replicated;
    expect((await fetchAll(hosts.a)).map((m) => hexlify(m.messageId))).to.include(hexlify(after.messageId));
    await ackAll(hosts.a);
    await ackAll(hosts.b);
  });
});

describe("node/db and node/log: the node's database and logger", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "sending-db-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("opens in WAL mode with foreign keys and full sync, and runs each migration once across reopenings", () => {
    const file = path.join(dir, "a", "node.db");
    const extra = [{ id: "test/1-notes", up: "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)" }];
    const db = openNodeDatabase(file, { migrations: extra });
    expect(db.sqlite.pragma("journal_mode", { simple: true })).to.equal("wal");
    expect(db.sqlite.pragma("foreign_keys", { simple: true })).to.equal(1);
    expect(db.sqlite.pragma("synchronous", { simple: true })).to.equal(2); // FULL
    expect(db.appliedMigrations()).to.deep.equal(["inbox/1-messages", "inbox/2-messages-rowid", "test/1-notes"]);
    db.sqlite.prepare("INSERT INTO notes (text) VALUES (?)").run("kept");
    db.close();
    db.close(); // idempotent
    expect(() => db.appliedMigrations()).to.throw(NodeDatabaseError, "closed");

    const again = openNodeDatabase(file, { synchronous: "NORMAL" });
    expect(again.sqlite.pragma("synchronous", { simple: true })).to.equal(1);
    expect(again.migrate(extra)).to.deep.equal([]);
    expect(again.sqlite.prepare("SELECT text FROM notes").pluck().all()).to.deep.equal(["kept"]);
    again.close();
  });

  it("moves an inbox of the first schema to a rowid table with every message kept, about 1.3 KB a 1 KB message", () => {
    const file = path.join(dir, "c", "node.db");
    // A database a node of the first schema left behind: migration 1 only, with 1,000 messages in it.
    const old = openNodeDatabase(file, { withoutInbox: true, migrations: [INBOX_MIGRATIONS[0]] });
    const now = Date.now();
    const rows = Array.from({ length: 1_000 }, (_, i) => ({
      recipientId: new Uint8Array(20).fill(i % 7),
      messageId: Uint8Array.from(randomBytes(16)),
      storedAt: now + i,
      expiresAt: now + 3_600_000,
      envelope: Uint8Array.from(randomBytes(1_000)),
      promiseSignature: Uint8Array.from(randomBytes(65)),
    }));
    const quota: InboxQuota = { maxMessages: 10_000, maxBytes: 10_000_000 };
    for (const row of rows) expect(new InboxStore(old).insert(row, quota, now).outcome).to.equal("stored");
    old.close();
    const sizeBefore = statSync(file).size;

    const db = openNodeDatabase(file);
    try {
      expect(db.appliedMigrations()).to.deep.equal(["inbox/1-messages", "inbox/2-messages-rowid"]);
      const sql = db.sqlite.prepare("SELECT sql FROM sqlite_master WHERE name = 'inbox_messages'").pluck().get();
      expect(String(sql)).to.not.match(/WITHOUT ROWID/i);
      const store = new InboxStore(db);
      for (let r = 0; r < 7; r++) {
        const recipientId = new Uint8Array(20).fill(r);
        const expected = rows.filter((row) => row.recipientId[0] === r);
        expect(store.page(recipientId, now, 1_000)).to.deep.equal(expected);
      }
      // Still one message per id: a second insert of a held id is a duplicate, not a second row.
      expect(store.insert(rows[0], quota, now).outcome).to.equal("duplicate");
      db.sqlite.exec("VACUUM");
    } finally {
      db.close();
    }
    const sizeAfter = statSync(file).size;
    expect(sizeBefore / rows.length, "bytes a message before").to.be.greaterThan(4_000);
    expect(sizeAfter / rows.length, "bytes a message after").to.be.lessThan(1_600);
  });

  it("rolls a failing migration back whole and refuses bad migration lists with typed errors", () => {
    const db = openNodeDatabase(path.join(dir, "b", "node.db"));
    try {
      const failing = { id: "test/2-half", up: "CREATE TABLE half (a INTEGER); INSERT INTO nowhere VALUES (1);" };
      try {
        db.migrate([failing]);
        expect.fail("expected DB_MIGRATION_FAILED");
      } catch (error) {
        expect(error).to.be.instanceOf(NodeDatabaseError);
        expect((error as NodeDatabaseError).code).to.equal("DB_MIGRATION_FAILED");
        expect((error as Error).message).to.contain("test/2-half");
      }
      const tables = db.sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
      expect(tables).to.not.include("half");
      expect(db.appliedMigrations()).to.not.include("test/2-half");
      for (const list of [
        [{ id: "Bad Id", up: "SELECT 1" }],
        [
          { id: "test/3", up: "SELECT 1" },
          { id: "test/3", up: "SELECT 1" },
        ],
      ]) {
        expect(() => db.migrate(list))
          .to.throw(NodeDatabaseError)
          .with.property("code", "DB_BAD_MIGRATION");
      }
    } finally {
      db.close();
    }
  });

  it("writes one JSON line per entry at or above its level, to the sink", () => {
    const lines: string[] = [];
    const previous = setLogSink((line) => lines.push(line));
    try {
      const log = createLogger("test", "info");
      log.debug("hidden");
      log.info("shown", { n: 1n, bytes: Uint8Array.of(1, 2), msg: "field named like a key" });
      log.child("sub").error("failed", { error: new InboxError("INBOX_QUOTA_EXCEEDED", "full") });
      createLogger("quiet", "silent").error("never");
    } finally {
      setLogSink(previous);
    }
    expect(lines).to.have.length(2);
    const [info, error] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(info).to.include({ level: "info", name: "test", msg: "shown", n: "1", bytes: "0102" });
    expect(info.field_msg).to.equal("field named like a key");
    expect(error).to.include({ level: "error", name: "test:sub", msg: "failed" });
    expect(error.error).to.deep.equal({ name: "InboxError", message: "full", code: "INBOX_QUOTA_EXCEEDED" });
  });
});
