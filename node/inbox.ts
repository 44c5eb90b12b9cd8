/**
 * The edge node's persistent offline inbox on `/sending/inbox/2.0.0` (formats in sdk/wire/messages.ts, docs/WIRE.md).
 *
 * A message reaches a recipient's home nodes in one of two ways: the relay's exit calls `accept(recipient,
 * delivery)` with the parsed onion payload (it must be a home node of the recipient), which stores it and replicates
 * it with STORE to the recipient's other home nodes; or another home node sends STORE (accepted only from the peer
 * of one of the recipient's other home nodes, and only if this node is a home node too). Every stored message is
 * answered with the node's EIP-712 StorePromise (sdk/chain/slashing.ts) over keccak256 of the envelope, the recipient
 * and the expiry (stored time + ttl, in seconds): the node can be slashed if it drops the message earlier.
 *
 * The recipient reads with FETCH, LIST and SUBSCRIBE and deletes with ACK, each signed with the Ed25519 signing key of
 * its DID (node/directory.ts) for this node's peer id; a request outside REQUEST_WINDOW_MS or with a nonce seen
 * within it is refused (REPLAYED). SUBSCRIBE keeps the stream open: the node first pushes the backlog (at least one
 * MESSAGES frame, empty if there is none, which confirms the subscription), then one MESSAGES frame per message as it
 * is stored; the client may send ACK frames on the same stream. Store-then-push: a pushed message stays stored until
 * it is acknowledged or expires.
 *
 * Storage is node/db.ts's sqlite file (WAL, synchronous FULL): a STORED answer, or `accept` returning, comes after
 * the transaction that stored the message committed, so a crash loses nothing acknowledged. Quotas (messages and
 * bytes per recipient) are checked in the same transaction. Expired messages are never served and a periodic sweep
 * deletes them; the clock is injectable so tests need no sleeps.
 *
 * Every inbound frame goes through the size-limited FrameDecoder and the strict parser before anything else; every
 * refusal is a typed error answer (docs/WIRE.md). A plain class with start/stop over the Libp2p object, like
 * node/relay.ts.
 */
import { getBytes, type Signer, type TypedDataDomain } from "ethers";
import { bytesToHex } from "@noble/hashes/utils.js";
import type { Connection, Libp2p, PeerId, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { messageHash, signStorePromise } from "../sdk/chain/slashing";
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
  type Frame,
} from "../sdk/wire/frame";
import {
  INBOX_MAX_BATCH,
  INBOX_MAX_LIST,
  InboxType,
  MAX_TTL_SECONDS,
  MESSAGE_ID_BYTES,
  MessageError,
  PROMISE_SIGNATURE_BYTES,
  REQUEST_WINDOW_MS,
  checkInboxRequest,
  encodeInboxMessage,
  parseInboxMessage,
  type AckMessage,
  type Delivery,
  type InboxMessage,
  type SignedInboxRequest,
  type StoreMessage,
  type StoredEnvelope,
} from "../sdk/wire/messages";
import { MAX_PAYLOAD_BYTES } from "../sdk/wire/onion";
import type { NodeDatabase } from "./db";
import { recipientFromId, recipientIdOf, type RecipientDirectory } from "./directory";
import { framingRefusal } from "./serve";
import { createLogger, type Logger } from "./log";
import { drained } from "../sdk/net/drain";
import { readFromNow } from "../sdk/net/reader";
import { RateLimiter, type RateLimit } from "./rateLimit";

/** Per-recipient limits of what a home node holds. */
export interface InboxQuota {
  /** Most messages held for one recipient. */
  readonly maxMessages: number;
  /** Most envelope bytes held for one recipient. */
  readonly maxBytes: number;
}

/** Stream and replication limits. */
export interface InboxLimits {
  /** A stream without a subscription is closed after this long without a frame. */
  readonly idleTimeoutMs: number;
  /** Give up replicating to one home node after this long. */
  readonly replicationTimeoutMs: number;
  /** Most live subscriptions of one recipient (devices, reconnects); more are RATE_LIMITED. */
  readonly maxSubscriptionsPerRecipient: number;
  /** Frames queued for one subscriber before the node drops the subscription (a slow reader must refetch). */
  readonly maxQueuedFrames: number;
  /** Inbound inbox streams per connection (libp2p's maxInboundStreams). */
  readonly maxInboundStreams: number;
  /** Signed requests (FETCH, LIST, ACK, SUBSCRIBE) one peer may make; RATE_LIMITED beyond, before the signature check. */
  readonly peerRateLimit: RateLimit;
  /** How often expired messages and nonces are deleted. */
  readonly sweepIntervalMs: number;
}

/** 1,000 messages of up to 3,706 bytes: a month of a busy chat; a client offline longer should fetch. */
export const DEFAULT_INBOX_QUOTA: InboxQuota = { maxMessages: 1_000, maxBytes: 4 * 1024 * 1024 };

/** Defaults of InboxLimits, each with its reason. */
export const DEFAULT_INBOX_LIMITS: InboxLimits = {
  idleTimeoutMs: 30_000, // a request/answer exchange takes milliseconds; 30 s frees idle streams
  replicationTimeoutMs: 10_000, // as the relay's forward: a home node unreachable for 10 s will not answer later
  maxSubscriptionsPerRecipient: 8, // a handful of devices plus reconnects not yet noticed as closed
  maxQueuedFrames: 256, // at most 256 × 68 KiB in memory per subscriber before it is dropped
  maxInboundStreams: 32, // a client needs 1–2 (subscribe + requests); replicas one each
  // A sync is a FETCH and an ACK per 16 messages, a backup a few LISTs: 20 a second with 200 at once lets a client
  // empty a full inbox (1,000 messages, 125 requests) at once, while a flood costs at most 20 signature checks a second.
  peerRateLimit: { perSecond: 20, burst: 200 },
  sweepIntervalMs: 60_000, // expired messages are never served anyway; the sweep only frees disk
};

/** Why the inbox refused something, with the error answer it maps to on the wire. */
export type InboxErrorCode =
  | "INBOX_NOT_HOME_NODE" // this node does not hold the recipient's inbox
  | "INBOX_QUOTA_EXCEEDED" // the recipient's inbox is full
  | "INBOX_BAD_ARGUMENT" // a delivery or recipient outside the format
  | "INBOX_NOT_STARTED" // accept() before start() or after stop()
  | "INBOX_ID_CONFLICT"; // a message id the inbox holds, with another envelope

const WIRE_CODE_OF: Readonly<Record<InboxErrorCode, WireErrorCode>> = {
  INBOX_NOT_HOME_NODE: WireErrorCode.NOT_FOUND,
  INBOX_QUOTA_EXCEEDED: WireErrorCode.QUOTA_EXCEEDED,
  INBOX_BAD_ARGUMENT: WireErrorCode.MALFORMED,
  INBOX_NOT_STARTED: WireErrorCode.INTERNAL,
  INBOX_ID_CONFLICT: WireErrorCode.MALFORMED,
};

/** A refusal of the inbox; `wireCode` is the error answer the exit should pass back. */
export class InboxError extends Error {
  readonly code: InboxErrorCode;
  readonly wireCode: WireErrorCode;
  constructor(code: InboxErrorCode, message: string) {
    super(message);
    this.name = "InboxError";
    this.code = code;
    this.wireCode = WIRE_CODE_OF[code];
  }
}

// --- storage ---------------------------------------------------------------------------------------------------------

/** One stored message as the database holds it. */
export interface StoredRow {
  readonly recipientId: Uint8Array;
  readonly messageId: Uint8Array;
  /** ms since the epoch, node clock. */
  readonly storedAt: number;
  /** ms since the epoch: the promise's expiry (seconds) × 1000; never served from then on. */
  readonly expiresAt: number;
  readonly envelope: Uint8Array;
  readonly promiseSignature: Uint8Array;
}

/** What `InboxStore.insert` did. */
export type InsertOutcome =
  | { readonly outcome: "stored"; readonly row: StoredRow }
  | { readonly outcome: "duplicate"; readonly row: StoredRow }
  | { readonly outcome: "quota"; readonly count: number; readonly bytes: number };

interface DbRow {
  recipient: Buffer;
  message_id: Buffer;
  stored_at: number;
  expires_at: number;
  envelope: Buffer;
  promise_sig: Buffer;
}

const toRow = (r: DbRow): StoredRow => ({
  recipientId: new Uint8Array(r.recipient),
  messageId: new Uint8Array(r.message_id),
  storedAt: r.stored_at,
  expiresAt: r.expires_at,
  envelope: new Uint8Array(r.envelope),
  promiseSignature: new Uint8Array(r.promise_sig),
});

/**
 * The inbox tables (INBOX_MIGRATIONS in node/db.ts), synchronous: each method is one statement or one IMMEDIATE
 * transaction, so a method that returned has committed. `now` is passed in by the caller (the service's clock).
 */
export class InboxStore {
  private readonly db: NodeDatabase;
  private readonly q;

  constructor(db: NodeDatabase) {
    this.db = db;
    const s = db.sqlite;
    this.q = {
      find: s.prepare<[Buffer, Buffer, number], DbRow>(
        "SELECT * FROM inbox_messages WHERE recipient = ? AND message_id = ? AND expires_at > ?",
      ),
      usage: s.prepare<[Buffer, number], { count: number; bytes: number }>(
        "SELECT COUNT(*) AS count, COALESCE(SUM(size), 0) AS bytes FROM inbox_messages WHERE recipient = ? AND expires_at > ?",
      ),
      dropExpired: s.prepare<[Buffer, Buffer, number]>(
        "DELETE FROM inbox_messages WHERE recipient = ? AND message_id = ? AND expires_at <= ?",
      ),
      insert: s.prepare<[Buffer, Buffer, number, number, Buffer, number, Buffer]>(
        `INSERT INTO inbox_messages (recipient, message_id, stored_at, expires_at, envelope, size, promise_sig)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      // A row value, not "stored_at > ? OR (stored_at = ? AND message_id > ?)": SQLite plans it as a range of the
      // (recipient, stored_at, message_id) index, where the OR form scans the recipient's rows from the oldest on
      // every page (paging through 20,000 rows took 1.5 s that way, 0.14 s this way: quadratic against linear).
      page: s.prepare<[Buffer, number, number, Buffer, number], DbRow>(
        `SELECT * FROM inbox_messages WHERE recipient = ? AND expires_at > ?
           AND (stored_at, message_id) > (?, ?)
         ORDER BY stored_at, message_id LIMIT ?`,
      ),
      remove: s.prepare<[Buffer, Buffer]>("DELETE FROM inbox_messages WHERE recipient = ? AND message_id = ?"),
      sweepMessages: s.prepare<[number]>("DELETE FROM inbox_messages WHERE expires_at <= ?"),
      sweepNonces: s.prepare<[number]>("DELETE FROM inbox_nonces WHERE expires_at <= ?"),
      nonceSeen: s.prepare<[Buffer, Buffer, number], number>(
        "SELECT 1 FROM inbox_nonces WHERE recipient = ? AND nonce = ? AND expires_at > ?",
      ),
      nonceUpsert: s.prepare<[Buffer, Buffer, number]>(
        "INSERT OR REPLACE INTO inbox_nonces (recipient, nonce, expires_at) VALUES (?, ?, ?)",
      ),
      count: s.prepare<[], number>("SELECT COUNT(*) FROM inbox_messages"),
    };
    this.q.nonceSeen.pluck();
    this.q.count.pluck();
  }

  /** The live (unexpired) message `messageId` of `recipientId`. */
  find(recipientId: Uint8Array, messageId: Uint8Array, now: number): StoredRow | undefined {
    const row = this.q.find.get(buf(recipientId), buf(messageId), now);
    return row === undefined ? undefined : toRow(row);
  }

  /** Live messages and envelope bytes held for `recipientId`. */
  usage(recipientId: Uint8Array, now: number): { count: number; bytes: number } {
    return this.q.usage.get(buf(recipientId), now) ?? { count: 0, bytes: 0 };
  }

  /**
   * Stores `row` unless a live message with its id exists (then returns that one: replicas and retries are
   * deduplicated) or it would take the recipient over `quota`. One transaction.
   */
  insert(row: StoredRow, quota: InboxQuota, now: number): InsertOutcome {
    return this.db.transaction((): InsertOutcome => {
      const recipient = buf(row.recipientId);
      const id = buf(row.messageId);
      const existing = this.q.find.get(recipient, id, now);
      if (existing !== undefined) return { outcome: "duplicate", row: toRow(existing) };
      const { count, bytes } = this.q.usage.get(recipient, now) ?? { count: 0, bytes: 0 };
      if (count + 1 > quota.maxMessages || bytes + row.envelope.length > quota.maxBytes) {
        return { outcome: "quota", count, bytes };
      }
      this.q.dropExpired.run(recipient, id, now);
      this.q.insert.run(
        recipient,
        id,
        row.storedAt,
        row.expiresAt,
        buf(row.envelope),
        row.envelope.length,
        buf(row.promiseSignature),
      );
      return { outcome: "stored", row };
    });
  }

  /** Up to `limit` live messages of `recipientId`, oldest first, after the cursor `after` (exclusive). */
  page(
    recipientId: Uint8Array,
    now: number,
    limit: number,
    after: { storedAt: number; messageId: Uint8Array } = { storedAt: -1, messageId: new Uint8Array(0) },
  ): StoredRow[] {
    return this.q.page.all(buf(recipientId), now, after.storedAt, buf(after.messageId), limit).map(toRow);
  }

  /** Deletes the listed messages of `recipientId` in one transaction; returns how many existed. */
  remove(recipientId: Uint8Array, messageIds: readonly Uint8Array[]): number {
    return this.db.transaction(() => {
      let deleted = 0;
      const seen = new Set<string>();
      for (const id of messageIds) {
        const key = bytesToHex(id);
        if (seen.has(key)) continue;
        seen.add(key);
        deleted += this.q.remove.run(buf(recipientId), buf(id)).changes;
      }
      return deleted;
    });
  }

  /**
   * Records a request nonce until `expiresAt`; false when it was already recorded and has not expired (a replay).
   * One transaction.
   */
  rememberNonce(recipientId: Uint8Array, nonce: Uint8Array, expiresAt: number, now: number): boolean {
    return this.db.transaction(() => {
      if (this.q.nonceSeen.get(buf(recipientId), buf(nonce), now) !== undefined) return false;
      this.q.nonceUpsert.run(buf(recipientId), buf(nonce), expiresAt);
      return true;
    });
  }

  /** Deletes expired messages and nonces; returns how many of each. */
  sweep(now: number): { messages: number; nonces: number } {
    return this.db.transaction(() => ({
      messages: this.q.sweepMessages.run(now).changes,
      nonces: this.q.sweepNonces.run(now).changes,
    }));
  }

  /** Messages held for everyone, expired or not (for tests and metrics). */
  totalMessages(): number {
    return this.q.count.get() ?? 0;
  }
}

const buf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

// --- service ---------------------------------------------------------------------------------------------------------

/** The part of a libp2p node the inbox uses. */
export type InboxHost = Pick<Libp2p, "handle" | "unhandle" | "dialProtocol" | "peerId">;

/** Maps an operator address to the libp2p peer id string of its node (from the NodeRegistry, via discovery). */
export type PeerIdOf = (operator: string) => string | undefined | Promise<string | undefined>;

export interface InboxServiceInit {
  readonly db: NodeDatabase;
  readonly directory: RecipientDirectory;
  /** The node's registered signer: signs StorePromises. */
  readonly nodeSigner: Signer;
  /** This node's operator address, as the recipients' DIDs name their home nodes. */
  readonly operator: string;
  /** The EIP-712 domain of the slashing contract (sdk/chain/slashing.ts `slashingDomain`). */
  readonly promiseDomain: TypedDataDomain;
  /**
   * Peer id of another home node's operator. Replication dials it by peer id: the host's peer store must know its
   * addresses (discovery merges them).
   */
  readonly peerIdOf: PeerIdOf;
  readonly quota?: Partial<InboxQuota>;
  readonly limits?: Partial<InboxLimits>;
  /** Clock in ms since the epoch; Date.now if omitted (tests move it instead of sleeping). */
  readonly now?: () => number;
  readonly logger?: Logger;
}

/** What one replica answered. */
export interface ReplicaResult {
  readonly operator: string;
  readonly peerId?: string;
  /** True when the replica answered STORED for this message id. */
  readonly ok: boolean;
  /** The replica's STORED answer (its own promise), when ok. */
  readonly stored?: { readonly expiry: number; readonly promiseSignature: Uint8Array };
  /** The error answer or failure, when not ok. */
  readonly error?: string;
}

/** What `accept` (and a STORE) produced. */
export interface AcceptResult {
  readonly messageId: Uint8Array;
  /** True when a live message with this id was already held (nothing new stored, the same promise returned). */
  readonly duplicate: boolean;
  /** The StorePromise expiry, Unix seconds. */
  readonly expiry: number;
  /** This node's StorePromise signature (65 bytes). */
  readonly promiseSignature: Uint8Array;
  /** Resolves when every other home node answered or timed out (never rejects). */
  readonly replicated: Promise<ReplicaResult[]>;
}

/** Serialises the frames written to one stream, waiting for drain, so pushes and answers never interleave bytes. */
class FrameWriter {
  private tail: Promise<void> = Promise.resolve();
  queued = 0;

  constructor(
    private readonly stream: Stream,
    private readonly signal: AbortSignal,
  ) {}

  write(frame: Uint8Array): Promise<void> {
    this.queued++;
    const next = this.tail.then(async () => {
      try {
        if (!this.stream.send(frame)) await drained(this.stream, this.signal);
      } finally {
        this.queued--;
      }
    });
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Resolves when everything queued so far was written (or failed). */
  flushed(): Promise<void> {
    return this.tail;
  }
}

interface Subscription {
  readonly recipientKey: string;
  readonly stream: Stream;
  readonly writer: FrameWriter;
  readonly sent: Set<string>;
  /** Live messages that arrived while the backlog was going out. */
  pending: StoredRow[] | undefined;
  closed: boolean;
}

/** The inbox service: storage, replication, and the protocol handler. */
export class InboxService {
  readonly store: InboxStore;
  private readonly host: InboxHost;
  private readonly init: InboxServiceInit;
  private readonly quota: InboxQuota;
  private readonly limits: InboxLimits;
  private readonly peerLimiter: RateLimiter; // signed requests by peer
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly operator: string;
  private readonly nodePeerId: Uint8Array;
  private readonly subscriptions = new Map<string, Set<Subscription>>(); // recipient id hex → subscriptions
  private readonly streams = new Set<Stream>();
  private readonly replications = new Set<Promise<ReplicaResult[]>>();
  private controller = new AbortController();
  private sweepTimer: NodeJS.Timeout | undefined;
  private peerIdFromString: ((id: string) => PeerId) | undefined;
  private started = false;

  constructor(host: InboxHost, init: InboxServiceInit) {
    const where = "InboxService";
    const quota = { ...DEFAULT_INBOX_QUOTA, ...init.quota };
    const limits = { ...DEFAULT_INBOX_LIMITS, ...init.limits };
    const { peerRateLimit, ...counts } = limits;
    for (const [name, value] of Object.entries({ ...quota, ...counts })) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new InboxError("INBOX_BAD_ARGUMENT", `${where}: expected ${name} to be a positive integer, got ${value}`);
      }
    }
    let operator: string;
    try {
      operator = recipientFromId(recipientIdOf(init.operator)) as string;
    } catch {
      throw new InboxError(
        "INBOX_BAD_ARGUMENT",
        `${where}: expected an operator address, got ${String(init.operator)}`,
      );
    }
    this.host = host;
    this.init = init;
    this.quota = quota;
    this.limits = limits;
    this.peerLimiter = new RateLimiter(peerRateLimit, { now: init.now });
    this.operator = operator;
    this.now = init.now ?? Date.now;
    this.log = init.logger ?? createLogger("inbox");
    this.store = new InboxStore(init.db);
    this.nodePeerId = host.peerId.toMultihash().bytes;
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.peerIdFromString ??= (await import("@libp2p/peer-id")).peerIdFromString;
    this.controller = new AbortController();
    await this.host.handle(INBOX_PROTOCOL, (stream, connection) => this.handleStream(stream, connection), {
      maxInboundStreams: this.limits.maxInboundStreams,
    });
    this.sweepTimer = setInterval(() => this.sweepSafely(), this.limits.sweepIntervalMs);
    this.sweepTimer.unref();
    this.started = true;
  }

  /** Stops serving: unhandles the protocol, ends subscriptions and open streams, waits for replications to end. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.controller.abort(new InboxError("INBOX_NOT_STARTED", "InboxService: stopped"));
    await this.host.unhandle(INBOX_PROTOCOL);
    for (const stream of this.streams) stream.abort(new InboxError("INBOX_NOT_STARTED", "InboxService: stopped"));
    this.streams.clear();
    this.subscriptions.clear();
    await Promise.all([...this.replications]);
  }

  /** Deletes expired messages and nonces now (the timer does it every sweepIntervalMs). */
  sweep(): { messages: number; nonces: number } {
    const result = this.store.sweep(this.now());
    if (result.messages > 0) this.log.info("swept expired messages", result);
    return result;
  }

  /** Live subscriptions of `recipient` (an address or a wire id). */
  subscriberCount(recipient: string | Uint8Array): number {
    const id = typeof recipient === "string" ? recipientIdOf(recipient) : recipient;
    return this.subscriptions.get(bytesToHex(id))?.size ?? 0;
  }

  /**
   * The relay exit's entry point: stores `delivery` for `recipient` (the onion's 20-byte recipient id, or its
   * address) and replicates it to the recipient's other home nodes. Throws InboxError: INBOX_NOT_HOME_NODE when this
   * node does not hold the recipient's inbox, INBOX_QUOTA_EXCEEDED when it is full, INBOX_BAD_ARGUMENT.
   */
  async accept(recipient: Uint8Array | string, delivery: Delivery): Promise<AcceptResult> {
    const where = "InboxService.accept";
    if (!this.started) throw new InboxError("INBOX_NOT_STARTED", `${where}: the service is not started`);
    const recipientId = this.recipientIdArg(recipient, where);
    checkDelivery(delivery, where);
    const address = recipientFromId(recipientId) as string;
    const homes = await this.init.directory.homeNodes(address);
    if (!homes.includes(this.operator)) {
      throw new InboxError("INBOX_NOT_HOME_NODE", `${where}: this node is not a home node of ${address}`);
    }
    const result = await this.storeLocal(recipientId, delivery, where);
    const replicated = result.duplicate
      ? Promise.resolve<ReplicaResult[]>([])
      : this.replicate(recipientId, delivery, homes);
    return { ...result, replicated };
  }

  // --- storing -------------------------------------------------------------------------------------------------------

  private async storeLocal(
    recipientId: Uint8Array,
    delivery: Delivery,
    where: string,
  ): Promise<Omit<AcceptResult, "replicated">> {
    const now = this.now();
    const existing = this.store.find(recipientId, delivery.messageId, now);
    if (existing !== undefined) return this.duplicateOf(where, existing, delivery.envelope);
    const usage = this.store.usage(recipientId, now);
    if (usage.count + 1 > this.quota.maxMessages || usage.bytes + delivery.envelope.length > this.quota.maxBytes) {
      throw this.quotaError(where, usage);
    }
    const expiry = Math.floor(now / 1000) + delivery.ttlSeconds;
    const signature = await signStorePromise(this.init.nodeSigner, this.init.promiseDomain, {
      messageHash: messageHash(delivery.envelope),
      recipient: recipientFromId(recipientId) as string,
      expiry: BigInt(expiry),
    });
    const promiseSignature = getBytes(signature);
    if (promiseSignature.length !== PROMISE_SIGNATURE_BYTES) {
      throw new Error(`${where}: expected a ${PROMISE_SIGNATURE_BYTES}-byte signature from the node signer`);
    }
    const row: StoredRow = {
      recipientId,
      messageId: delivery.messageId,
      storedAt: now,
      expiresAt: expiry * 1000,
      envelope: delivery.envelope,
      promiseSignature,
    };
    // The clock may have moved while signing; the transaction re-checks duplicates and the quota at `now`.
    const outcome = this.store.insert(row, this.quota, this.now());
    if (outcome.outcome === "quota") throw this.quotaError(where, outcome);
    if (outcome.outcome === "duplicate") return this.duplicateOf(where, outcome.row, delivery.envelope);
    this.log.debug("message stored", { recipient: recipientId, messageId: delivery.messageId });
    this.push(row);
    return answerOf(row, false);
  }

  /**
   * A replica or retry of a held message gets the held message's answer; the same id with another envelope is refused:
   * it would otherwise get the held envelope's store promise back while its own envelope is dropped.
   */
  private duplicateOf(where: string, held: StoredRow, envelope: Uint8Array): Omit<AcceptResult, "replicated"> {
    if (!equalBytes(held.envelope, envelope)) {
      throw new InboxError("INBOX_ID_CONFLICT", `${where}: message id already held with another envelope`);
    }
    return answerOf(held, true);
  }

  private quotaError(where: string, usage: { count: number; bytes: number }): InboxError {
    return new InboxError(
      "INBOX_QUOTA_EXCEEDED",
      `${where}: inbox full (${usage.count}/${this.quota.maxMessages} messages, ${usage.bytes}/${this.quota.maxBytes} bytes)`,
    );
  }

  /** Sends STORE to every other home node of the recipient, in parallel; never rejects. */
  private replicate(recipientId: Uint8Array, delivery: Delivery, homes: readonly string[]): Promise<ReplicaResult[]> {
    const others = homes.filter((h) => h !== this.operator);
    const task = Promise.all(others.map((operator) => this.replicateTo(operator, recipientId, delivery)));
    this.replications.add(task);
    void task.finally(() => this.replications.delete(task));
    return task;
  }

  private async replicateTo(operator: string, recipientId: Uint8Array, delivery: Delivery): Promise<ReplicaResult> {
    let peerId: string | undefined;
    try {
      peerId = await this.init.peerIdOf(operator);
    } catch (error) {
      return { operator, ok: false, error: `peerIdOf failed: ${(error as Error).message}` };
    }
    if (peerId === undefined || this.peerIdFromString === undefined) {
      return { operator, ok: false, error: "no peer id known for this operator" };
    }
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.limits.replicationTimeoutMs)]);
    let stream: Stream | undefined;
    const onAbort = () => stream?.abort(new Error("InboxService: replication timed out or stopped"));
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const store: StoreMessage = { type: InboxType.STORE, recipientId, ...delivery };
      const { type, body } = encodeInboxMessage(store);
      stream = await this.host.dialProtocol(this.peerIdFromString(peerId), INBOX_PROTOCOL, { signal });
      const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
      if (!stream.send(encodeFrame(type, body, INBOX_MAX_FRAME_BYTES))) await drained(stream, signal);
      await stream.close({ signal });
      const decoder = new FrameDecoder(INBOX_MAX_FRAME_BYTES);
      let result: ReplicaResult = { operator, peerId, ok: false, error: "no answer" };
      for await (const chunk of chunks) {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === ERROR_FRAME_TYPE) {
            const answer = parseErrorAnswer(frame.body);
            result = { operator, peerId, ok: false, error: `error ${answer.code}: ${answer.message}` };
          } else {
            const answer = parseInboxMessage(frame.type, frame.body);
            if (answer.type === InboxType.STORED && equalBytes(answer.messageId, delivery.messageId)) {
              const stored = { expiry: answer.expiry, promiseSignature: answer.promiseSignature };
              result = { operator, peerId, ok: true, stored };
            } else {
              result = { operator, peerId, ok: false, error: `unexpected answer type ${frame.type}` };
            }
          }
        }
      }
      decoder.end();
      if (!result.ok) this.log.warn("replication refused", { operator, peerId, error: result.error });
      return result;
    } catch (error) {
      this.log.warn("replication failed", { operator, peerId, error });
      stream?.abort(error as Error);
      return { operator, peerId, ok: false, error: (error as Error).message };
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  // --- the protocol handler ------------------------------------------------------------------------------------------

  private async handleStream(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    if (!this.started) {
      stream.abort(new InboxError("INBOX_NOT_STARTED", "InboxService: stopped"));
      return;
    }
    this.streams.add(stream);
    const writer = new FrameWriter(stream, this.controller.signal);
    const decoder = new FrameDecoder(INBOX_MAX_FRAME_BYTES);
    const state: { subscription?: Subscription } = {};
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      if (state.subscription !== undefined) return;
      idle = setTimeout(() => stream.abort(new Error("InboxService: idle stream")), this.limits.idleTimeoutMs);
      idle.unref();
    };
    try {
      armIdle();
      for await (const chunk of stream) {
        armIdle();
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch (error) {
          await writer.write(encodeErrorFrame(framingRefusal(error), INBOX_MAX_FRAME_BYTES));
          await stream.close();
          await stream.closeRead();
          return;
        }
        for (const frame of frames) {
          const answer = await this.handleFrame(frame, from, stream, writer, state);
          if (answer !== undefined) await writer.write(answer);
          armIdle();
        }
      }
      try {
        decoder.end();
      } catch (error) {
        await writer.write(encodeErrorFrame(framingRefusal(error), INBOX_MAX_FRAME_BYTES));
      }
      this.endSubscription(state.subscription);
      await writer.flushed();
      await stream.close();
    } catch (error) {
      if (this.started) this.log.debug("inbox stream failed", { from, error });
      stream.abort(error as Error);
    } finally {
      clearTimeout(idle);
      this.endSubscription(state.subscription);
      this.streams.delete(stream);
    }
  }

  /** Handles one frame; returns the encoded answer frame, or undefined when the answer goes out otherwise. */
  private async handleFrame(
    frame: Frame,
    from: string,
    stream: Stream,
    writer: FrameWriter,
    state: { subscription?: Subscription },
  ): Promise<Uint8Array | undefined> {
    let message: InboxMessage;
    try {
      message = parseInboxMessage(frame.type, frame.body);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      const code = error.code === "MESSAGE_UNKNOWN_TYPE" ? WireErrorCode.UNSUPPORTED : WireErrorCode.MALFORMED;
      return errorFrame({ code, message: error.message });
    }
    try {
      switch (message.type) {
        case InboxType.STORE:
          return await this.onStore(message, from);
        case InboxType.FETCH:
        case InboxType.LIST:
        case InboxType.ACK:
        case InboxType.SUBSCRIBE: {
          if (!this.peerLimiter.take(from)) {
            const { perSecond, burst } = this.peerLimiter.limit;
            return errorFrame({
              code: WireErrorCode.RATE_LIMITED,
              message: `inbox: too many requests from this peer: at most ${perSecond} a second, ${burst} at once`,
            });
          }
          const refusal = await this.authorize(message);
          if (refusal !== undefined) return errorFrame(refusal);
          if (message.type === InboxType.FETCH) {
            const rows = this.store.page(message.recipientId, this.now(), message.limit, message.after);
            return answerFrame({ type: InboxType.MESSAGES, messages: rows.map(storedEnvelope) });
          }
          if (message.type === InboxType.LIST) {
            const limit = Math.min(message.limit, INBOX_MAX_LIST);
            const rows = this.store.page(message.recipientId, this.now(), limit, message.after);
            const entries = rows.map((r) => ({
              messageId: r.messageId,
              storedAt: r.storedAt,
              size: r.envelope.length,
            }));
            return answerFrame({ type: InboxType.LISTING, entries });
          }
          if (message.type === InboxType.ACK) return this.onAck(message);
          return this.onSubscribe(message.recipientId, stream, writer, state);
        }
        default:
          return errorFrame({
            code: WireErrorCode.UNSUPPORTED,
            message: `inbox: a node does not accept message type ${message.type}`,
          });
      }
    } catch (error) {
      if (error instanceof InboxError) return errorFrame({ code: error.wireCode, message: error.message });
      this.log.error("inbox request failed", { from, type: message.type, error });
      return errorFrame({ code: WireErrorCode.INTERNAL, message: "inbox: the node failed; retry" });
    }
  }

  private async onStore(message: StoreMessage, from: string): Promise<Uint8Array> {
    const where = "inbox STORE";
    const address = recipientFromId(message.recipientId);
    if (address === undefined) {
      return errorFrame({ code: WireErrorCode.NOT_FOUND, message: `${where}: expected a 20-byte recipient id` });
    }
    const homes = await this.init.directory.homeNodes(address);
    if (!homes.includes(this.operator)) {
      return errorFrame({ code: WireErrorCode.NOT_FOUND, message: `${where}: not a home node of ${address}` });
    }
    let fromHome = false;
    for (const operator of homes) {
      if (operator !== this.operator && (await this.init.peerIdOf(operator)) === from) fromHome = true;
    }
    if (!fromHome) {
      return errorFrame({
        code: WireErrorCode.UNAUTHORIZED,
        message: `${where}: only another home node of the recipient may replicate to this one`,
      });
    }
    const { messageId, ttlSeconds, envelope } = message;
    const stored = await this.storeLocal(message.recipientId, { messageId, ttlSeconds, envelope }, where);
    return answerFrame({
      type: InboxType.STORED,
      messageId,
      expiry: stored.expiry,
      promiseSignature: stored.promiseSignature,
    });
  }

  /** Checks a signed request: known signing key, signature for this node, fresh timestamp, unseen nonce. */
  private async authorize(request: SignedInboxRequest): Promise<ErrorAnswer | undefined> {
    const address = recipientFromId(request.recipientId);
    const key = address === undefined ? undefined : await this.init.directory.signingKey(address);
    if (key === undefined) {
      return { code: WireErrorCode.UNAUTHORIZED, message: "inbox: the recipient has no active DID signing key" };
    }
    const now = this.now();
    const check = checkInboxRequest(this.nodePeerId, request, key, now);
    if (check === "stale") {
      return { code: WireErrorCode.REPLAYED, message: "inbox: request timestamp outside the window" };
    }
    if (check !== "ok") {
      return { code: WireErrorCode.UNAUTHORIZED, message: "inbox: bad signature for this recipient and node" };
    }
    // The nonce must stay refused as long as the timestamp is acceptable: until timestamp + window, from now on.
    const until = Math.max(now, request.timestamp) + REQUEST_WINDOW_MS;
    if (!this.store.rememberNonce(request.recipientId, request.nonce, until, now)) {
      return { code: WireErrorCode.REPLAYED, message: "inbox: nonce seen before" };
    }
    return undefined;
  }

  private onAck(message: AckMessage): Uint8Array {
    const deleted = this.store.remove(message.recipientId, message.messageIds);
    for (const sub of this.subscriptions.get(bytesToHex(message.recipientId)) ?? []) {
      for (const id of message.messageIds) sub.sent.delete(bytesToHex(id));
    }
    return answerFrame({ type: InboxType.ACKED, deleted });
  }

  private onSubscribe(
    recipientId: Uint8Array,
    stream: Stream,
    writer: FrameWriter,
    state: { subscription?: Subscription },
  ): Uint8Array | undefined {
    if (state.subscription !== undefined) {
      return errorFrame({ code: WireErrorCode.UNSUPPORTED, message: "inbox: this stream is already subscribed" });
    }
    const key = bytesToHex(recipientId);
    const subs = this.subscriptions.get(key) ?? new Set<Subscription>();
    if (subs.size >= this.limits.maxSubscriptionsPerRecipient) {
      return errorFrame({
        code: WireErrorCode.RATE_LIMITED,
        message: "inbox: too many subscriptions for this recipient",
      });
    }
    const sub: Subscription = { recipientKey: key, stream, writer, sent: new Set(), pending: [], closed: false };
    subs.add(sub);
    this.subscriptions.set(key, subs);
    state.subscription = sub;
    void this.sendBacklog(sub, recipientId);
    return undefined;
  }

  /** Pages the backlog out (oldest first, up to INBOX_MAX_BATCH a frame), then the live messages held meanwhile. */
  private async sendBacklog(sub: Subscription, recipientId: Uint8Array): Promise<void> {
    try {
      let cursor: { storedAt: number; messageId: Uint8Array } | undefined;
      let first = true;
      for (;;) {
        if (sub.closed) return;
        const rows = this.store.page(recipientId, this.now(), INBOX_MAX_BATCH, cursor);
        if (rows.length === 0 && !first) break;
        first = false;
        for (const r of rows) sub.sent.add(bytesToHex(r.messageId));
        await sub.writer.write(answerFrame({ type: InboxType.MESSAGES, messages: rows.map(storedEnvelope) }));
        if (rows.length < INBOX_MAX_BATCH) break;
        const last = rows[rows.length - 1];
        cursor = { storedAt: last.storedAt, messageId: last.messageId };
      }
      const pending = sub.pending ?? [];
      sub.pending = undefined;
      for (const row of pending) this.pushTo(sub, row);
    } catch (error) {
      this.log.debug("subscription backlog failed", { error });
      this.dropSubscription(sub);
    }
  }

  /** Pushes a newly stored message to the recipient's live subscriptions. */
  private push(row: StoredRow): void {
    for (const sub of this.subscriptions.get(bytesToHex(row.recipientId)) ?? []) {
      if (sub.pending !== undefined) sub.pending.push(row);
      else this.pushTo(sub, row);
    }
  }

  private pushTo(sub: Subscription, row: StoredRow): void {
    const id = bytesToHex(row.messageId);
    if (sub.closed || sub.sent.has(id) || row.expiresAt <= this.now()) return;
    if (sub.writer.queued >= this.limits.maxQueuedFrames) {
      this.log.warn("subscriber too slow, dropping its subscription", { recipient: sub.recipientKey });
      this.dropSubscription(sub);
      return;
    }
    sub.sent.add(id);
    sub.writer
      .write(answerFrame({ type: InboxType.MESSAGES, messages: [storedEnvelope(row)] }))
      .catch(() => this.dropSubscription(sub));
  }

  private endSubscription(sub: Subscription | undefined): void {
    if (sub === undefined || sub.closed) return;
    sub.closed = true;
    const subs = this.subscriptions.get(sub.recipientKey);
    subs?.delete(sub);
    if (subs?.size === 0) this.subscriptions.delete(sub.recipientKey);
  }

  private dropSubscription(sub: Subscription): void {
    if (sub.closed) return;
    this.endSubscription(sub);
    sub.stream.abort(new Error("InboxService: subscription dropped"));
  }

  private sweepSafely(): void {
    try {
      this.sweep();
    } catch (error) {
      this.log.error("sweep failed", { error });
    }
  }

  private recipientIdArg(recipient: Uint8Array | string, where: string): Uint8Array {
    if (typeof recipient === "string") {
      try {
        return recipientIdOf(recipient);
      } catch {
        throw new InboxError("INBOX_BAD_ARGUMENT", `${where}: expected a recipient address, got ${recipient}`);
      }
    }
    if (!(recipient instanceof Uint8Array) || recipientFromId(recipient) === undefined) {
      throw new InboxError("INBOX_BAD_ARGUMENT", `${where}: expected a 20-byte recipient id`);
    }
    return recipient;
  }
}

function checkDelivery(delivery: Delivery, where: string): void {
  const { messageId, ttlSeconds, envelope } = delivery ?? ({} as Delivery);
  if (!(messageId instanceof Uint8Array) || messageId.length !== MESSAGE_ID_BYTES) {
    throw new InboxError("INBOX_BAD_ARGUMENT", `${where}: expected a ${MESSAGE_ID_BYTES}-byte message id`);
  }
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new InboxError(
      "INBOX_BAD_ARGUMENT",
      `${where}: expected ttlSeconds in 1..${MAX_TTL_SECONDS}, got ${ttlSeconds}`,
    );
  }
  if (!(envelope instanceof Uint8Array) || envelope.length === 0 || envelope.length > MAX_PAYLOAD_BYTES) {
    throw new InboxError("INBOX_BAD_ARGUMENT", `${where}: expected an envelope of 1..${MAX_PAYLOAD_BYTES} bytes`);
  }
}

function answerOf(row: StoredRow, duplicate: boolean): Omit<AcceptResult, "replicated"> {
  return {
    messageId: row.messageId,
    duplicate,
    expiry: row.expiresAt / 1000,
    promiseSignature: row.promiseSignature,
  };
}

const storedEnvelope = (row: StoredRow): StoredEnvelope => ({
  messageId: row.messageId,
  storedAt: row.storedAt,
  envelope: row.envelope,
});

function answerFrame(message: InboxMessage): Uint8Array {
  const { type, body } = encodeInboxMessage(message);
  return encodeFrame(type, body, INBOX_MAX_FRAME_BYTES);
}

const errorFrame = (answer: ErrorAnswer): Uint8Array => encodeErrorFrame(answer, INBOX_MAX_FRAME_BYTES);

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
