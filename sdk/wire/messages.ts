/**
 * Typed message bodies of the inbox, prekeys and bills protocols. Each protocol's messages travel as frames
 * (sdk/wire/frame.ts): the frame's type byte says which message, the body is one of the layouts below. Every parse
 * function is strict (exact lengths, known types, bounded counts, no trailing bytes) and throws MessageError naming
 * the function and what it expected; nothing from the network reaches a node or a client untyped. docs/WIRE.md
 * gives every layout byte by byte.
 *
 * Authorisation: reading or deleting an inbox, and publishing prekeys, are signed by the owner's Ed25519 signing key
 * (the one in its DID document, the X3DH identity's `signing` key). What is signed is `requestSigningBytes`: a
 * domain string, the operation, the peer id of the node asked (so a request cannot be replayed to another home
 * node), the recipient id, a millisecond timestamp and a 16-byte random nonce, then the operation's fields. A node
 * accepts a request only within REQUEST_WINDOW_MS of its clock and remembers the nonces it saw for that long.
 */
import { ByteReader, ByteWriter, toHex } from "../crypto/bytes";
import { SIGNATURE_LENGTH, sign, verify } from "../crypto/primitives";
import type { PrekeyBundle } from "../crypto/x3dh";
import { SIGNED_BILL_LENGTH, decodeSignedBill, encodeSignedBill, type SignedBill } from "../bill/bill";
import { MAX_ID_BYTES, MAX_PAYLOAD_BYTES } from "./onion";

/** Bytes of a stored message's id: random, chosen by the sender, so home nodes deduplicate replicas. */
export const MESSAGE_ID_BYTES = 16;
/** Bytes of a request nonce: 128 random bits never repeat by chance within a request window. */
export const NONCE_BYTES = 16;
/** Most messages in one fetch answer (or one ack): 16 full envelopes fit in INBOX_MAX_FRAME_BYTES. */
export const INBOX_MAX_BATCH = 16;
/** Most entries in one list answer: 256 × 26 bytes, a few kilobytes. */
export const INBOX_MAX_LIST = 256;
/** Longest a message may wait for its recipient: 30 days, then the home node drops it. */
export const MAX_TTL_SECONDS = 30 * 24 * 3600;
/** How far a signed request's timestamp may be from the node's clock: clocks drift, replays must not last. */
export const REQUEST_WINDOW_MS = 5 * 60 * 1000;
/** Most one-time prekeys in one publication (36 bytes each): a client tops up in batches. */
export const MAX_ONE_TIME_PREKEYS = 100;
/** Most bills in one SUBMIT or one BILLS page: 64 × 135 bytes fits BILLS_MAX_FRAME_BYTES. */
export const MAX_BILLS_PER_SUBMISSION = 64;
/** Largest timestamp: milliseconds that are still exact JavaScript integers (2^53 - 1). */
const MAX_TIMESTAMP = Number.MAX_SAFE_INTEGER;

/** Why a message was refused. */
export type MessageErrorCode =
  | "MESSAGE_MALFORMED" // a body that does not parse as the expected layout
  | "MESSAGE_UNKNOWN_TYPE" // a type byte the protocol does not define
  | "MESSAGE_BAD_ARGUMENT"; // an encoder given a value outside the format

/** A message body that could not be encoded or parsed. */
export class MessageError extends Error {
  readonly code: MessageErrorCode;
  constructor(code: MessageErrorCode, message: string) {
    super(message);
    this.name = "MessageError";
    this.code = code;
  }
}

const malformed = (message: string) => new MessageError("MESSAGE_MALFORMED", message);
const badArgument = (message: string) => new MessageError("MESSAGE_BAD_ARGUMENT", message);

// --- inbox ---------------------------------------------------------------------------------------------------------

/** Type bytes of the inbox protocol. */
export const InboxType = {
  STORE: 0x01, // exit or replica → home node: keep this envelope for a recipient
  STORED: 0x02, // home node → sender: the envelope is kept
  FETCH: 0x03, // recipient → home node, signed: send me up to `limit` envelopes
  MESSAGES: 0x04, // home node → recipient: the envelopes
  ACK: 0x05, // recipient → home node, signed: delete these envelopes
  ACKED: 0x06, // home node → recipient: how many were deleted
  LIST: 0x07, // recipient → home node, signed: list up to `limit` ids
  LISTING: 0x08, // home node → recipient: ids, times and sizes
  SUBSCRIBE: 0x09, // recipient → home node, signed: push MESSAGES on this stream, backlog first, then live
} as const;

/** Bytes of a store promise signature on the wire: an Ethereum signature r (32) || s (32) || v (1). */
export const PROMISE_SIGNATURE_BYTES = 65;

/** The signed fields common to fetch, list and ack. */
export interface SignedRequestFields {
  readonly recipientId: Uint8Array;
  /** Milliseconds since the Unix epoch, by the recipient's clock. */
  readonly timestamp: number;
  readonly nonce: Uint8Array;
  /** Ed25519 signature over `requestSigningBytes`. */
  readonly signature: Uint8Array;
}

export interface StoreMessage {
  readonly type: typeof InboxType.STORE;
  readonly recipientId: Uint8Array;
  readonly messageId: Uint8Array;
  readonly ttlSeconds: number;
  readonly envelope: Uint8Array;
}
export interface StoredMessage {
  readonly type: typeof InboxType.STORED;
  readonly messageId: Uint8Array;
  /**
   * The StorePromise's expiry in Unix seconds (stored time + ttl). With keccak256 of the envelope and the recipient
   * address it rebuilds the promise the signature covers (sdk/chain/slashing.ts).
   */
  readonly expiry: number;
  /** The node signer's EIP-712 StorePromise signature (r || s || v, 65 bytes). */
  readonly promiseSignature: Uint8Array;
}
/**
 * Where a page of the inbox starts: after this message (exclusive), in the node's order (stored time, then id). The
 * last entry of the previous page; absent for the first page.
 */
export interface InboxCursor {
  /** The stored time of the last message already read (ms since the Unix epoch, by the node's clock). */
  readonly storedAt: number;
  /** Its id. */
  readonly messageId: Uint8Array;
}
export interface FetchMessage extends SignedRequestFields {
  readonly type: typeof InboxType.FETCH;
  readonly limit: number;
  /** Start after this message; absent: from the oldest. */
  readonly after?: InboxCursor;
}
export interface StoredEnvelope {
  readonly messageId: Uint8Array;
  /** Milliseconds since the Unix epoch, by the home node's clock. */
  readonly storedAt: number;
  readonly envelope: Uint8Array;
}
export interface MessagesMessage {
  readonly type: typeof InboxType.MESSAGES;
  readonly messages: readonly StoredEnvelope[];
}
export interface AckMessage extends SignedRequestFields {
  readonly type: typeof InboxType.ACK;
  readonly messageIds: readonly Uint8Array[];
}
export interface AckedMessage {
  readonly type: typeof InboxType.ACKED;
  readonly deleted: number;
}
export interface ListMessage extends SignedRequestFields {
  readonly type: typeof InboxType.LIST;
  readonly limit: number;
  /** Start after this message; absent: from the oldest. */
  readonly after?: InboxCursor;
}
export interface ListEntry {
  readonly messageId: Uint8Array;
  readonly storedAt: number;
  readonly size: number;
}
export interface ListingMessage {
  readonly type: typeof InboxType.LISTING;
  readonly entries: readonly ListEntry[];
}
/** Signed like FETCH, without a limit: the node answers with MESSAGES frames on the same stream until it closes. */
export interface SubscribeMessage extends SignedRequestFields {
  readonly type: typeof InboxType.SUBSCRIBE;
}
/** The signed inbox requests. */
export type SignedInboxRequest = FetchMessage | ListMessage | AckMessage | SubscribeMessage;

export type InboxMessage =
  | StoreMessage
  | StoredMessage
  | FetchMessage
  | MessagesMessage
  | AckMessage
  | AckedMessage
  | ListMessage
  | ListingMessage
  | SubscribeMessage;

/** A signed inbox request before it is signed. */
export type UnsignedInboxRequest =
  | Omit<FetchMessage, "signature">
  | Omit<ListMessage, "signature">
  | Omit<AckMessage, "signature">
  | Omit<SubscribeMessage, "signature">;

const INBOX_DOMAIN = new TextEncoder().encode("SendingNetwork_InboxRequest_v1");

/**
 * The bytes the recipient signs for a fetch, list, ack or subscribe: "SendingNetwork_InboxRequest_v1" || type (1) ||
 * node peer id length (1) || node peer id || recipient id length (1) || recipient id || timestamp (8) || nonce (16)
 * || then, for fetch and list, limit (1) || cursor flag (1: 0 none, 1 one follows) || [stored at (8) || message id
 * (16)]; for ack, count (1) || message ids (16 each); nothing for subscribe.
 */
export function requestSigningBytes(nodePeerId: Uint8Array, request: UnsignedInboxRequest): Uint8Array {
  const w = new ByteWriter().bytes(INBOX_DOMAIN).u8(request.type);
  writeId(w, nodePeerId, "requestSigningBytes", "node peer id");
  writeRequestFields(w, request, "requestSigningBytes");
  return w.finish();
}

/** Signs a fetch, list, ack or subscribe with the recipient's Ed25519 signing key, for the home node `nodePeerId`. */
export function signInboxRequest<T extends UnsignedInboxRequest>(
  nodePeerId: Uint8Array,
  request: T,
  signingSecretKey: Uint8Array,
): T & { readonly signature: Uint8Array } {
  return { ...request, signature: sign(signingSecretKey, requestSigningBytes(nodePeerId, request)) };
}

/** Why a signed request was not accepted (the node answers with the matching WireErrorCode). */
export type RequestCheck = "ok" | "bad-signature" | "stale";

/**
 * Checks a parsed fetch, list, ack or subscribe: the signature under the recipient's Ed25519 key (from its DID document), for
 * this node, and the timestamp within REQUEST_WINDOW_MS of `nowMs`. The caller must also refuse a nonce it has seen
 * within the window.
 */
export function checkInboxRequest(
  nodePeerId: Uint8Array,
  request: SignedInboxRequest,
  signingPublicKey: Uint8Array,
  nowMs: number,
): RequestCheck {
  if (Math.abs(nowMs - request.timestamp) > REQUEST_WINDOW_MS) return "stale";
  const { signature, ...unsigned } = request;
  return verify(signingPublicKey, requestSigningBytes(nodePeerId, unsigned), signature) ? "ok" : "bad-signature";
}

/** Encodes an inbox message into its frame type and body. */
export function encodeInboxMessage(message: InboxMessage): { type: number; body: Uint8Array } {
  const where = "encodeInboxMessage";
  const w = new ByteWriter();
  switch (message.type) {
    case InboxType.STORE:
      writeId(w, message.recipientId, where, "recipient id");
      w.bytes(fixed(message.messageId, MESSAGE_ID_BYTES, where, "message id"));
      w.u32(ranged(message.ttlSeconds, 1, MAX_TTL_SECONDS, where, "ttlSeconds"));
      writeEnvelope(w, message.envelope, where);
      break;
    case InboxType.STORED:
      w.bytes(fixed(message.messageId, MESSAGE_ID_BYTES, where, "message id"));
      writeTimestamp(w, message.expiry, where);
      w.bytes(fixed(message.promiseSignature, PROMISE_SIGNATURE_BYTES, where, "promise signature"));
      break;
    case InboxType.FETCH:
    case InboxType.LIST:
    case InboxType.ACK:
    case InboxType.SUBSCRIBE:
      writeRequestFields(w, message, where);
      w.bytes(fixed(message.signature, SIGNATURE_LENGTH, where, "signature"));
      break;
    case InboxType.MESSAGES:
      w.u8(ranged(message.messages.length, 0, INBOX_MAX_BATCH, where, "message count"));
      for (const m of message.messages) {
        w.bytes(fixed(m.messageId, MESSAGE_ID_BYTES, where, "message id"));
        writeTimestamp(w, m.storedAt, where);
        writeEnvelope(w, m.envelope, where);
      }
      break;
    case InboxType.ACKED:
      w.u8(ranged(message.deleted, 0, INBOX_MAX_BATCH, where, "deleted count"));
      break;
    case InboxType.LISTING:
      w.u16(ranged(message.entries.length, 0, INBOX_MAX_LIST, where, "entry count"));
      for (const e of message.entries) {
        w.bytes(fixed(e.messageId, MESSAGE_ID_BYTES, where, "message id"));
        writeTimestamp(w, e.storedAt, where);
        w.u16(ranged(e.size, 0, MAX_PAYLOAD_BYTES, where, "size"));
      }
      break;
    default:
      throw badArgument(`${where}: unknown message type ${String((message as { type: unknown }).type)}`);
  }
  return { type: message.type, body: w.finish() };
}

/** Parses an inbox frame (type and body) strictly, or throws MessageError. */
export function parseInboxMessage(type: number, body: Uint8Array): InboxMessage {
  const where = "parseInboxMessage";
  const r = new ByteReader(body, where, malformed);
  let message: InboxMessage;
  switch (type) {
    case InboxType.STORE:
      message = {
        type,
        recipientId: readId(r, where, "recipient id"),
        messageId: r.bytes(MESSAGE_ID_BYTES, "message id"),
        ttlSeconds: readRanged(r.u32("ttlSeconds"), 1, MAX_TTL_SECONDS, where, "ttlSeconds"),
        envelope: readEnvelope(r, where),
      };
      break;
    case InboxType.STORED:
      message = {
        type,
        messageId: r.bytes(MESSAGE_ID_BYTES, "message id"),
        expiry: readTimestamp(r, where),
        promiseSignature: r.bytes(PROMISE_SIGNATURE_BYTES, "promise signature"),
      };
      break;
    case InboxType.SUBSCRIBE: {
      const recipientId = readId(r, where, "recipient id");
      const timestamp = readTimestamp(r, where);
      const nonce = r.bytes(NONCE_BYTES, "nonce");
      message = { type, recipientId, timestamp, nonce, signature: r.bytes(SIGNATURE_LENGTH, "signature") };
      break;
    }
    case InboxType.FETCH:
    case InboxType.LIST: {
      const recipientId = readId(r, where, "recipient id");
      const timestamp = readTimestamp(r, where);
      const nonce = r.bytes(NONCE_BYTES, "nonce");
      const limit = readRanged(r.u8("limit"), 1, type === InboxType.FETCH ? INBOX_MAX_BATCH : 255, where, "limit");
      const after = readCursor(r, where);
      const signature = r.bytes(SIGNATURE_LENGTH, "signature");
      message = { type, recipientId, timestamp, nonce, limit, ...(after && { after }), signature };
      break;
    }
    case InboxType.ACK: {
      const recipientId = readId(r, where, "recipient id");
      const timestamp = readTimestamp(r, where);
      const nonce = r.bytes(NONCE_BYTES, "nonce");
      const count = readRanged(r.u8("message count"), 1, INBOX_MAX_BATCH, where, "message count");
      const messageIds: Uint8Array[] = [];
      for (let i = 0; i < count; i++) messageIds.push(r.bytes(MESSAGE_ID_BYTES, "message id"));
      const signature = r.bytes(SIGNATURE_LENGTH, "signature");
      message = { type, recipientId, timestamp, nonce, messageIds, signature };
      break;
    }
    case InboxType.MESSAGES: {
      const count = readRanged(r.u8("message count"), 0, INBOX_MAX_BATCH, where, "message count");
      const messages: StoredEnvelope[] = [];
      for (let i = 0; i < count; i++) {
        const messageId = r.bytes(MESSAGE_ID_BYTES, "message id");
        const storedAt = readTimestamp(r, where);
        messages.push({ messageId, storedAt, envelope: readEnvelope(r, where) });
      }
      message = { type, messages };
      break;
    }
    case InboxType.ACKED:
      message = { type, deleted: readRanged(r.u8("deleted count"), 0, INBOX_MAX_BATCH, where, "deleted count") };
      break;
    case InboxType.LISTING: {
      const count = readRanged(r.u16("entry count"), 0, INBOX_MAX_LIST, where, "entry count");
      const entries: ListEntry[] = [];
      for (let i = 0; i < count; i++) {
        const messageId = r.bytes(MESSAGE_ID_BYTES, "message id");
        const storedAt = readTimestamp(r, where);
        entries.push({ messageId, storedAt, size: readRanged(r.u16("size"), 0, MAX_PAYLOAD_BYTES, where, "size") });
      }
      message = { type, entries };
      break;
    }
    default:
      throw new MessageError("MESSAGE_UNKNOWN_TYPE", `${where}: expected an inbox type 1..9, got ${type}`);
  }
  r.end();
  return message;
}

// --- exit delivery -------------------------------------------------------------------------------------------------

/** First byte of an exit delivery payload: what the payload is, so other deliverable kinds can follow. */
export const DELIVERY_KIND_INBOX = 0x01;
/** Bytes before the envelope in a delivery payload: kind (1) || message id (16) || ttl seconds (4). */
export const DELIVERY_HEADER_BYTES = 1 + MESSAGE_ID_BYTES + 4;
/** Largest envelope a delivery carries: what a 3-hop packet's payload leaves after the delivery header. */
export const MAX_DELIVERY_ENVELOPE_BYTES = MAX_PAYLOAD_BYTES - DELIVERY_HEADER_BYTES;

/** What the sender puts in the onion payload for the exit node to store in the recipient's inbox. */
export interface Delivery {
  /** Random, chosen by the sender: home nodes deduplicate replicas by it. */
  readonly messageId: Uint8Array;
  /** How long the home nodes keep it for an offline recipient: 1..MAX_TTL_SECONDS. */
  readonly ttlSeconds: number;
  /** The end-to-end encrypted envelope, 1..MAX_DELIVERY_ENVELOPE_BYTES. */
  readonly envelope: Uint8Array;
}

/**
 * The exit payload: kind (1, DELIVERY_KIND_INBOX) || message id (16) || ttl seconds (4, 1..MAX_TTL_SECONDS) ||
 * envelope (the rest, 1..MAX_DELIVERY_ENVELOPE_BYTES). The onion's deliver header carries the payload's exact
 * length, so the envelope needs no length of its own.
 */
export function encodeDelivery(delivery: Delivery): Uint8Array {
  const where = "encodeDelivery";
  const envelope = delivery.envelope;
  if (!(envelope instanceof Uint8Array) || envelope.length === 0 || envelope.length > MAX_DELIVERY_ENVELOPE_BYTES) {
    throw badArgument(`${where}: expected an envelope of 1..${MAX_DELIVERY_ENVELOPE_BYTES} bytes`);
  }
  return new ByteWriter()
    .u8(DELIVERY_KIND_INBOX)
    .bytes(fixed(delivery.messageId, MESSAGE_ID_BYTES, where, "message id"))
    .u32(ranged(delivery.ttlSeconds, 1, MAX_TTL_SECONDS, where, "ttlSeconds"))
    .bytes(envelope)
    .finish();
}

/** Parses an exit payload strictly (known kind, ttl in range, a non-empty envelope), or throws MessageError. */
export function parseDelivery(payload: Uint8Array): Delivery {
  const where = "parseDelivery";
  if (!(payload instanceof Uint8Array)) throw malformed(`${where}: expected the payload as Uint8Array`);
  if (payload.length <= DELIVERY_HEADER_BYTES || payload.length > MAX_PAYLOAD_BYTES) {
    throw malformed(
      `${where}: expected ${DELIVERY_HEADER_BYTES + 1}..${MAX_PAYLOAD_BYTES} bytes, got ${payload.length}`,
    );
  }
  const r = new ByteReader(payload, where, malformed);
  const kind = r.u8("kind");
  if (kind !== DELIVERY_KIND_INBOX) {
    throw new MessageError(
      "MESSAGE_UNKNOWN_TYPE",
      `${where}: expected delivery kind ${DELIVERY_KIND_INBOX}, got ${kind}`,
    );
  }
  const messageId = r.bytes(MESSAGE_ID_BYTES, "message id");
  const ttlSeconds = readRanged(r.u32("ttlSeconds"), 1, MAX_TTL_SECONDS, where, "ttlSeconds");
  const envelope = r.bytes(payload.length - DELIVERY_HEADER_BYTES, "envelope");
  r.end();
  return { messageId, ttlSeconds, envelope };
}

// --- prekeys -------------------------------------------------------------------------------------------------------

/** Type bytes of the prekeys protocol. */
export const PrekeysType = {
  PUBLISH: 0x01, // owner → home node, signed: identity, signed prekey, one-time prekeys
  PUBLISHED: 0x02, // home node → owner: how many one-time prekeys it now holds
  FETCH_BUNDLE: 0x03, // anyone → home node: the bundle of a recipient
  BUNDLE: 0x04, // home node → requester: a bundle with at most one one-time prekey, never handed out twice
} as const;

export interface PublishPrekeysMessage {
  readonly type: typeof PrekeysType.PUBLISH;
  readonly recipientId: Uint8Array;
  readonly timestamp: number;
  readonly nonce: Uint8Array;
  readonly identity: { readonly dh: Uint8Array; readonly signing: Uint8Array };
  readonly signedPrekey: { readonly id: number; readonly publicKey: Uint8Array; readonly signature: Uint8Array };
  readonly oneTimePrekeys: readonly { readonly id: number; readonly publicKey: Uint8Array }[];
  /** Ed25519 signature by identity.signing over `publishSigningBytes`. */
  readonly signature: Uint8Array;
}
export interface PublishedMessage {
  readonly type: typeof PrekeysType.PUBLISHED;
  readonly oneTimePrekeysHeld: number;
}
export interface FetchBundleMessage {
  readonly type: typeof PrekeysType.FETCH_BUNDLE;
  readonly recipientId: Uint8Array;
}
export interface BundleMessage {
  readonly type: typeof PrekeysType.BUNDLE;
  readonly bundle: PrekeyBundle;
}
export type PrekeysMessage = PublishPrekeysMessage | PublishedMessage | FetchBundleMessage | BundleMessage;

const PUBLISH_DOMAIN = new TextEncoder().encode("SendingNetwork_PrekeyPublish_v1");

/**
 * The bytes the identity's signing key signs for a publication: "SendingNetwork_PrekeyPublish_v1" || node peer id
 * (length-prefixed) || the PUBLISH body without its signature. The node must also check that identity.signing is the
 * key in the recipient's DID document; the signed prekey carries its own X3DH signature.
 */
export function publishSigningBytes(
  nodePeerId: Uint8Array,
  message: Omit<PublishPrekeysMessage, "signature">,
): Uint8Array {
  const w = new ByteWriter().bytes(PUBLISH_DOMAIN);
  writeId(w, nodePeerId, "publishSigningBytes", "node peer id");
  writePublishFields(w, message, "publishSigningBytes");
  return w.finish();
}

/** Signs a prekey publication with the identity's Ed25519 signing key, for the home node `nodePeerId`. */
export function signPublishPrekeys(
  nodePeerId: Uint8Array,
  message: Omit<PublishPrekeysMessage, "signature">,
  signingSecretKey: Uint8Array,
): PublishPrekeysMessage {
  return { ...message, signature: sign(signingSecretKey, publishSigningBytes(nodePeerId, message)) };
}

/** True when a parsed publication is signed by its identity for this node and its timestamp is within the window. */
export function checkPublishPrekeys(
  nodePeerId: Uint8Array,
  message: PublishPrekeysMessage,
  nowMs: number,
): RequestCheck {
  if (Math.abs(nowMs - message.timestamp) > REQUEST_WINDOW_MS) return "stale";
  const { signature, ...unsigned } = message;
  return verify(message.identity.signing, publishSigningBytes(nodePeerId, unsigned), signature)
    ? "ok"
    : "bad-signature";
}

/** Encodes a prekeys message into its frame type and body. */
export function encodePrekeysMessage(message: PrekeysMessage): { type: number; body: Uint8Array } {
  const where = "encodePrekeysMessage";
  const w = new ByteWriter();
  switch (message.type) {
    case PrekeysType.PUBLISH:
      writePublishFields(w, message, where);
      w.bytes(fixed(message.signature, SIGNATURE_LENGTH, where, "signature"));
      break;
    case PrekeysType.PUBLISHED:
      w.u16(ranged(message.oneTimePrekeysHeld, 0, 0xffff, where, "oneTimePrekeysHeld"));
      break;
    case PrekeysType.FETCH_BUNDLE:
      writeId(w, message.recipientId, where, "recipient id");
      break;
    case PrekeysType.BUNDLE: {
      const { identity, signedPrekey, oneTimePrekey } = message.bundle;
      w.bytes(fixed(identity.dh, 32, where, "identity dh key"));
      w.bytes(fixed(identity.signing, 32, where, "identity signing key"));
      writePrekey(w, signedPrekey, where);
      w.bytes(fixed(signedPrekey.signature, SIGNATURE_LENGTH, where, "signed prekey signature"));
      w.u8(oneTimePrekey === undefined ? 0 : 1);
      if (oneTimePrekey !== undefined) writePrekey(w, oneTimePrekey, where);
      break;
    }
    default:
      throw badArgument(`${where}: unknown message type ${String((message as { type: unknown }).type)}`);
  }
  return { type: message.type, body: w.finish() };
}

/** Parses a prekeys frame (type and body) strictly, or throws MessageError. */
export function parsePrekeysMessage(type: number, body: Uint8Array): PrekeysMessage {
  const where = "parsePrekeysMessage";
  const r = new ByteReader(body, where, malformed);
  let message: PrekeysMessage;
  switch (type) {
    case PrekeysType.PUBLISH: {
      const recipientId = readId(r, where, "recipient id");
      const timestamp = readTimestamp(r, where);
      const nonce = r.bytes(NONCE_BYTES, "nonce");
      const identity = { dh: r.bytes(32, "identity dh key"), signing: r.bytes(32, "identity signing key") };
      const signedPrekey = { ...readPrekey(r), signature: r.bytes(SIGNATURE_LENGTH, "signed prekey signature") };
      const count = readRanged(r.u8("one-time prekey count"), 0, MAX_ONE_TIME_PREKEYS, where, "one-time prekey count");
      const oneTimePrekeys: { id: number; publicKey: Uint8Array }[] = [];
      for (let i = 0; i < count; i++) oneTimePrekeys.push(readPrekey(r));
      const signature = r.bytes(SIGNATURE_LENGTH, "signature");
      message = { type, recipientId, timestamp, nonce, identity, signedPrekey, oneTimePrekeys, signature };
      break;
    }
    case PrekeysType.PUBLISHED:
      message = { type, oneTimePrekeysHeld: r.u16("oneTimePrekeysHeld") };
      break;
    case PrekeysType.FETCH_BUNDLE:
      message = { type, recipientId: readId(r, where, "recipient id") };
      break;
    case PrekeysType.BUNDLE: {
      const identity = { dh: r.bytes(32, "identity dh key"), signing: r.bytes(32, "identity signing key") };
      const signedPrekey = { ...readPrekey(r), signature: r.bytes(SIGNATURE_LENGTH, "signed prekey signature") };
      const flag = r.u8("one-time prekey flag");
      if (flag > 1) throw malformed(`${where}: expected one-time prekey flag 0 or 1, got ${flag}`);
      const bundle: PrekeyBundle =
        flag === 1 ? { identity, signedPrekey, oneTimePrekey: readPrekey(r) } : { identity, signedPrekey };
      message = { type, bundle };
      break;
    }
    default:
      throw new MessageError("MESSAGE_UNKNOWN_TYPE", `${where}: expected a prekeys type 1..4, got ${type}`);
  }
  r.end();
  return message;
}

// --- bills ---------------------------------------------------------------------------------------------------------

/** Type bytes of the bills protocol. */
export const BillsType = {
  SUBMIT: 0x01, // recipient → edge node: bills it signed for this node (the node keeps the largest per key and epoch)
  ACCEPTED: 0x02, // edge node → recipient: how many it kept (the rest failed verification, were stale or smaller)
  COLLECT: 0x03, // guardian → edge node: send me the bills you hold for this epoch
  BILLS: 0x04, // edge node → guardian: one page of at most 64 bills, `more` set on every page but the last
  CONSENT_REQUEST: 0x05, // guardian → edge node: sign your consent to this slot of an ended epoch
  CONSENT: 0x06, // edge node → guardian: the consent, compact EIP-2098 (r || yParity and s)
} as const;

/** Bounds are order keys: below 2^200, like the circuit's and the rollup's (`RollupBoundTooLarge`). */
export const CONSENT_BOUND_LIMIT = 1n << 200n;
/** A slot's work is below 2^56, like the rollup's (`RollupWorkTooLarge`). */
export const CONSENT_WORK_LIMIT = 1n << 56n;
/** Bytes of a CONSENT_REQUEST body: epoch (8) || prevBound (32) || newBound (32) || work (8). */
export const CONSENT_REQUEST_BYTES = 80;
/** Bytes of a CONSENT body: consentR (32) || consentVS (32). */
export const CONSENT_BYTES = 64;

export interface SubmitBillsMessage {
  readonly type: typeof BillsType.SUBMIT;
  readonly bills: readonly SignedBill[];
}
export interface BillsAcceptedMessage {
  readonly type: typeof BillsType.ACCEPTED;
  readonly accepted: number;
}
export interface CollectBillsMessage {
  readonly type: typeof BillsType.COLLECT;
  /** The epoch whose bills the guardian wants (a uint64). */
  readonly epoch: bigint;
}
export interface BillsPageMessage {
  readonly type: typeof BillsType.BILLS;
  /** Up to MAX_BILLS_PER_SUBMISSION bills; an empty last page when the node holds none. */
  readonly bills: readonly SignedBill[];
  /** True when another BILLS page follows on the same stream. */
  readonly more: boolean;
}
/**
 * A guardian asks the node to consent to one slot it built from the node's bills (sdk/chain/consent.ts
 * `SlotConsent`; the slot's node is the node asked).
 */
export interface ConsentRequestMessage {
  readonly type: typeof BillsType.CONSENT_REQUEST;
  /** The ended epoch the slot settles (a uint64). */
  readonly epoch: bigint;
  /** The node's bound on chain the slot starts from, below 2^200. */
  readonly prevBound: bigint;
  /** The order key of the slot's last bill: above `prevBound`, below 2^200. */
  readonly newBound: bigint;
  /** The capped work of the slot's bills, below 2^56. */
  readonly work: bigint;
}
/** The node's signed consent to the slot asked for. */
export interface ConsentMessage {
  readonly type: typeof BillsType.CONSENT;
  /** 0x-prefixed 32-byte hex: the signature's r. */
  readonly consentR: string;
  /** 0x-prefixed 32-byte hex: yParity in the top bit, s below (EIP-2098). */
  readonly consentVS: string;
}
export type BillsMessage =
  | SubmitBillsMessage
  | BillsAcceptedMessage
  | CollectBillsMessage
  | BillsPageMessage
  | ConsentRequestMessage
  | ConsentMessage;

/** Largest epoch on the wire: bills carry a uint64 epoch. */
const MAX_EPOCH_U64 = (1n << 64n) - 1n;

/**
 * Encodes a bills message: SUBMIT is count (1, 1..64) || count × 135-byte signed bills (sdk/bill/bill.ts); ACCEPTED is
 * count (1); COLLECT is epoch (8, big-endian); BILLS is more (1, 0 or 1) || count (1, 0..64) || count × 135 bytes;
 * CONSENT_REQUEST is epoch (8) || prevBound (32) || newBound (32) || work (8); CONSENT is consentR (32) ||
 * consentVS (32). Integers are big-endian.
 */
export function encodeBillsMessage(message: BillsMessage): { type: number; body: Uint8Array } {
  const where = "encodeBillsMessage";
  const w = new ByteWriter();
  switch (message.type) {
    case BillsType.SUBMIT:
      writeBills(w, message.bills, 1, where);
      break;
    case BillsType.ACCEPTED:
      w.u8(ranged(message.accepted, 0, MAX_BILLS_PER_SUBMISSION, where, "accepted count"));
      break;
    case BillsType.COLLECT:
      writeUint(w, bigRanged(message.epoch, 0n, MAX_EPOCH_U64 + 1n, where, "epoch", "2^64"), 8);
      break;
    case BillsType.BILLS:
      if (typeof message.more !== "boolean") throw badArgument(`${where}: expected 'more' to be a boolean`);
      w.u8(message.more ? 1 : 0);
      writeBills(w, message.bills, 0, where);
      break;
    case BillsType.CONSENT_REQUEST: {
      writeUint(w, bigRanged(message.epoch, 0n, MAX_EPOCH_U64 + 1n, where, "epoch", "2^64"), 8);
      const prevBound = bigRanged(message.prevBound, 0n, CONSENT_BOUND_LIMIT, where, "prevBound", "2^200");
      const newBound = bigRanged(message.newBound, prevBound + 1n, CONSENT_BOUND_LIMIT, where, "newBound", "2^200");
      writeUint(w, prevBound, 32);
      writeUint(w, newBound, 32);
      writeUint(w, bigRanged(message.work, 0n, CONSENT_WORK_LIMIT, where, "work", "2^56"), 8);
      break;
    }
    case BillsType.CONSENT:
      w.bytes(hexWord(message.consentR, where, "consentR"));
      w.bytes(hexWord(message.consentVS, where, "consentVS"));
      break;
    default:
      throw badArgument(`${where}: unknown message type ${String((message as { type: unknown }).type)}`);
  }
  return { type: message.type, body: w.finish() };
}

/**
 * Parses a bills frame strictly, or throws MessageError (a malformed bill's BillFormatError is wrapped). Signatures
 * are not checked here: the edge node runs verifyBill on each bill submitted, the guardian again on each collected.
 */
export function parseBillsMessage(type: number, body: Uint8Array): BillsMessage {
  const where = "parseBillsMessage";
  const r = new ByteReader(body, where, malformed);
  let message: BillsMessage;
  switch (type) {
    case BillsType.SUBMIT:
      message = { type, bills: readBills(r, 1, where) };
      break;
    case BillsType.ACCEPTED:
      message = {
        type,
        accepted: readRanged(r.u8("accepted count"), 0, MAX_BILLS_PER_SUBMISSION, where, "accepted count"),
      };
      break;
    case BillsType.COLLECT:
      message = { type, epoch: readUint(r, 8, "epoch") };
      break;
    case BillsType.BILLS: {
      const more = r.u8("more flag");
      if (more > 1) throw malformed(`${where}: expected more flag 0 or 1, got ${more}`);
      message = { type, more: more === 1, bills: readBills(r, 0, where) };
      break;
    }
    case BillsType.CONSENT_REQUEST: {
      const epoch = readUint(r, 8, "epoch");
      const prevBound = readUint(r, 32, "prevBound");
      const newBound = readUint(r, 32, "newBound");
      const work = readUint(r, 8, "work");
      if (prevBound >= CONSENT_BOUND_LIMIT)
        throw malformed(`${where}: expected prevBound below 2^200, got ${prevBound}`);
      if (newBound >= CONSENT_BOUND_LIMIT) throw malformed(`${where}: expected newBound below 2^200, got ${newBound}`);
      if (newBound <= prevBound) {
        throw malformed(`${where}: expected newBound above prevBound ${prevBound}, got ${newBound}`);
      }
      if (work >= CONSENT_WORK_LIMIT) throw malformed(`${where}: expected work below 2^56, got ${work}`);
      message = { type, epoch, prevBound, newBound, work };
      break;
    }
    case BillsType.CONSENT:
      message = { type, consentR: toHexWord(r.bytes(32, "consentR")), consentVS: toHexWord(r.bytes(32, "consentVS")) };
      break;
    default:
      throw new MessageError("MESSAGE_UNKNOWN_TYPE", `${where}: expected a bills type 1..6, got ${type}`);
  }
  r.end();
  return message;
}

function writeBills(w: ByteWriter, bills: readonly SignedBill[], min: number, where: string): void {
  if (!Array.isArray(bills)) throw badArgument(`${where}: expected a list of bills`);
  w.u8(ranged(bills.length, min, MAX_BILLS_PER_SUBMISSION, where, "bill count"));
  for (const bill of bills) {
    try {
      w.bytes(encodeSignedBill(bill));
    } catch (e) {
      throw badArgument(`${where}: ${(e as Error).message}`);
    }
  }
}

function readBills(r: ByteReader, min: number, where: string): SignedBill[] {
  const count = readRanged(r.u8("bill count"), min, MAX_BILLS_PER_SUBMISSION, where, "bill count");
  const bills: SignedBill[] = [];
  for (let i = 0; i < count; i++) {
    const bytes = r.bytes(SIGNED_BILL_LENGTH, "signed bill");
    try {
      bills.push(decodeSignedBill(bytes));
    } catch (e) {
      throw malformed(`${where}: bill ${i}: ${(e as Error).message}`);
    }
  }
  return bills;
}

// --- internals -----------------------------------------------------------------------------------------------------

function bigRanged(value: unknown, min: bigint, limit: bigint, where: string, what: string, limitText: string): bigint {
  if (typeof value !== "bigint" || value < min || value >= limit) {
    throw badArgument(`${where}: expected ${what} in [${min}, ${limitText}), got ${String(value)}`);
  }
  return value;
}

/** Appends `value` (known to fit) as `length` big-endian bytes. */
function writeUint(w: ByteWriter, value: bigint, length: number): void {
  const out = new Uint8Array(length);
  for (let i = length - 1, v = value; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  w.bytes(out);
}

/** Reads `length` big-endian bytes as an unsigned integer. */
function readUint(r: ByteReader, length: number, what: string): bigint {
  let value = 0n;
  for (const byte of r.bytes(length, what)) value = (value << 8n) | BigInt(byte);
  return value;
}

/** The 32 bytes of a 0x-prefixed 64-digit hex string. */
function hexWord(value: unknown, where: string, what: string): Uint8Array {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(value)) {
    throw badArgument(`${where}: expected ${what} as 0x and 64 hex digits, got ${String(value)}`);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(value.slice(2 + 2 * i, 4 + 2 * i), 16);
  return out;
}

/** 0x and 64 lower-case hex digits. */
function toHexWord(bytes: Uint8Array): string {
  return "0x" + toHex(bytes);
}

function fixed(value: unknown, length: number, where: string, what: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw badArgument(`${where}: expected ${length}-byte ${what}`);
  }
  return value;
}

function ranged(value: unknown, min: number, max: number, where: string, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw badArgument(`${where}: expected ${what} in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function readRanged(value: number, min: number, max: number, where: string, what: string): number {
  if (value < min || value > max) throw malformed(`${where}: expected ${what} in [${min}, ${max}], got ${value}`);
  return value;
}

function writeId(w: ByteWriter, id: unknown, where: string, what: string): void {
  if (!(id instanceof Uint8Array) || id.length === 0 || id.length > MAX_ID_BYTES) {
    throw badArgument(`${where}: expected ${what} of 1..${MAX_ID_BYTES} bytes`);
  }
  w.u8(id.length).bytes(id);
}

function readId(r: ByteReader, where: string, what: string): Uint8Array {
  const length = readRanged(r.u8(`${what} length`), 1, MAX_ID_BYTES, where, `${what} length`);
  return r.bytes(length, what);
}

function writeTimestamp(w: ByteWriter, value: number, where: string): void {
  ranged(value, 0, MAX_TIMESTAMP, where, "timestamp");
  w.u32(Math.floor(value / 2 ** 32)).u32(value >>> 0);
}

function readTimestamp(r: ByteReader, where: string): number {
  const high = r.u32("timestamp");
  const low = r.u32("timestamp");
  if (high >= 2 ** 21) throw malformed(`${where}: expected a timestamp below 2^53, got high word ${high}`);
  return high * 2 ** 32 + low;
}

function writeEnvelope(w: ByteWriter, envelope: unknown, where: string): void {
  if (!(envelope instanceof Uint8Array) || envelope.length === 0 || envelope.length > MAX_PAYLOAD_BYTES) {
    throw badArgument(`${where}: expected an envelope of 1..${MAX_PAYLOAD_BYTES} bytes`);
  }
  w.u16(envelope.length).bytes(envelope);
}

function readEnvelope(r: ByteReader, where: string): Uint8Array {
  const length = readRanged(r.u16("envelope length"), 1, MAX_PAYLOAD_BYTES, where, "envelope length");
  return r.bytes(length, "envelope");
}

function writeRequestFields(w: ByteWriter, request: UnsignedInboxRequest, where: string): void {
  writeId(w, request.recipientId, where, "recipient id");
  writeTimestamp(w, request.timestamp, where);
  w.bytes(fixed(request.nonce, NONCE_BYTES, where, "nonce"));
  if (request.type === InboxType.ACK) {
    w.u8(ranged(request.messageIds.length, 1, INBOX_MAX_BATCH, where, "message count"));
    for (const id of request.messageIds) w.bytes(fixed(id, MESSAGE_ID_BYTES, where, "message id"));
  } else if (request.type === InboxType.SUBSCRIBE) {
    // nothing beyond the common fields
  } else {
    const max = request.type === InboxType.FETCH ? INBOX_MAX_BATCH : 255;
    w.u8(ranged(request.limit, 1, max, where, "limit"));
    if (request.after === undefined) {
      w.u8(0);
    } else {
      w.u8(1);
      writeTimestamp(w, request.after.storedAt, where);
      w.bytes(fixed(request.after.messageId, MESSAGE_ID_BYTES, where, "cursor message id"));
    }
  }
}

/**
 * Whether a MESSAGES page is in the inbox order after `after`: each envelope strictly after the one before it (the
 * first after the cursor, or anything without one), by stored time, then message id bytes, as the node sorts them.
 * A page that fails this would make a paging reader go back or repeat: its node is not to be paged further.
 */
export function inboxPageInOrder(page: readonly StoredEnvelope[], after: InboxCursor | undefined): boolean {
  let previous = after;
  for (const stored of page) {
    if (previous !== undefined) {
      const sameTime = stored.storedAt === previous.storedAt;
      if (stored.storedAt < previous.storedAt) return false;
      if (sameTime && Buffer.compare(stored.messageId, previous.messageId) <= 0) return false;
    }
    previous = stored;
  }
  return true;
}

/** A fetch's or list's cursor: flag (1: 0 none, 1 one follows) || [stored at (8) || message id (16)]. */
function readCursor(r: ByteReader, where: string): InboxCursor | undefined {
  const flag = r.u8("cursor flag");
  if (flag === 0) return undefined;
  if (flag !== 1) throw malformed(`${where}: expected a cursor flag of 0 or 1, got ${flag}`);
  const storedAt = readTimestamp(r, where);
  return { storedAt, messageId: r.bytes(MESSAGE_ID_BYTES, "cursor message id") };
}

function writePrekey(w: ByteWriter, prekey: { id: number; publicKey: Uint8Array }, where: string): void {
  w.u32(ranged(prekey.id, 0, 0xffff_ffff, where, "prekey id"));
  w.bytes(fixed(prekey.publicKey, 32, where, "prekey public key"));
}

function readPrekey(r: ByteReader): { id: number; publicKey: Uint8Array } {
  return { id: r.u32("prekey id"), publicKey: r.bytes(32, "prekey public key") };
}

function writePublishFields(w: ByteWriter, m: Omit<PublishPrekeysMessage, "signature">, where: string): void {
  writeId(w, m.recipientId, where, "recipient id");
  writeTimestamp(w, m.timestamp, where);
  w.bytes(fixed(m.nonce, NONCE_BYTES, where, "nonce"));
  w.bytes(fixed(m.identity.dh, 32, where, "identity dh key"));
  w.bytes(fixed(m.identity.signing, 32, where, "identity signing key"));
  writePrekey(w, m.signedPrekey, where);
  w.bytes(fixed(m.signedPrekey.signature, SIGNATURE_LENGTH, where, "signed prekey signature"));
  w.u8(ranged(m.oneTimePrekeys.length, 0, MAX_ONE_TIME_PREKEYS, where, "one-time prekey count"));
  for (const p of m.oneTimePrekeys) writePrekey(w, p, where);
}
