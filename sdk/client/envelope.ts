/**
 * What travels inside a delivery (sdk/wire/messages.ts `encodeDelivery`): the end-to-end envelope the recipient's
 * home nodes store and the recipient opens. Home nodes and the exit read envelopes, so an envelope names nobody: the
 * sender's address and the ratchet message are sealed to the recipient's X25519 identity key ("sealed sender").
 *
 *   envelope      = kind (1) || …
 *     SEALED 0x01   epk (32) || ChaCha20-Poly1305(key, nonce 0^12, aad = 0x01 || epk || recipient key, inner)
 *                   key = HKDF-SHA-256(ikm = X25519(e, recipient key), salt = epk || recipient key,
 *                                      info = "SendingNetwork_SealedSender_v1", 32)
 *     BACKUP 0x02   backup digest (32) || chunk index (2) || chunk count (2) || chunk bytes
 *                   (a piece of the wallet-encrypted backup blob the owner parks in its own inbox; the blob is
 *                    already sealed under the wallet's backup key, sdk/client/backup.ts)
 *   inner         = type (1) || sender address (20) || body
 *     INITIAL 0x01  body = X3DH header || first ratchet message (sdk/crypto/session.ts)
 *     RATCHET 0x02  body = ratchet message
 *   content       = the ratchet plaintext: kind (1) || …
 *     TEXT 0x01 UTF-8 | BINARY 0x02 bytes |
 *     GROUP_KEY 0x03 group id (32) || admin (20) || membership version (4, big-endian) || count (1, 1..
 *     MAX_GROUP_MEMBERS_ON_WIRE) || count × member (20, no repeats) || sender-key distribution (121) |
 *     GROUP_MESSAGE 0x04 group id (32) || sender-key message |
 *     SENT 0x05 recipient address (20) || a TEXT or BINARY content (a copy of what another client of the same user
 *     sent to that recipient, so each of the user's clients shows the whole conversation) |
 *     GROUP_KEY_REQUEST 0x06 group id (32) (the receiver is asked for its sender key, answered with a GROUP_KEY)
 *
 * The ephemeral key is fresh per envelope, so nonce 0 is safe. The seal hides the sender from the nodes; it does not
 * authenticate the sender by itself: the ratchet session does (a RATCHET message only opens under the session with
 * that address), and for an INITIAL message the client compares the X3DH identity with the sender's DID.
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { getAddress, getBytes, hexlify } from "ethers";
import { ByteReader, ByteWriter, concatBytes } from "../crypto/bytes";
import { TAG_LENGTH, aeadOpen, aeadSeal, dh, generateX25519KeyPair, type RandomBytes } from "../crypto/primitives";
import { RATCHET_MESSAGE_OVERHEAD } from "../crypto/ratchet";
import { X3DH_HEADER_LENGTH } from "../crypto/x3dh";
import { SENDER_KEY_DISTRIBUTION_LENGTH, SENDER_KEY_MESSAGE_OVERHEAD, GROUP_ID_LENGTH } from "../crypto/senderKeys";
import { MAX_DELIVERY_ENVELOPE_BYTES } from "../wire/messages";

/** Envelope kinds. */
export const EnvelopeKind = { SEALED: 0x01, BACKUP: 0x02 } as const;
/** Inner message types. */
export const InnerType = { INITIAL: 0x01, RATCHET: 0x02 } as const;
/** Content kinds (the first byte of a ratchet plaintext). */
export const ContentKind = {
  TEXT: 0x01,
  BINARY: 0x02,
  GROUP_KEY: 0x03,
  GROUP_MESSAGE: 0x04,
  SENT: 0x05,
  GROUP_KEY_REQUEST: 0x06,
} as const;

/** Bytes a sealed envelope adds around its inner message: kind, epk, tag. */
export const SEAL_OVERHEAD = 1 + 32 + TAG_LENGTH;
/** Bytes before the body of an inner message: type and sender address. */
export const INNER_HEADER_BYTES = 1 + 20;
/** Bytes of a backup chunk's header: kind, digest, index, count. */
export const BACKUP_CHUNK_HEADER_BYTES = 1 + 32 + 2 + 2;
/** Largest backup chunk: the rest of a delivery envelope. */
export const MAX_BACKUP_CHUNK_BYTES = MAX_DELIVERY_ENVELOPE_BYTES - BACKUP_CHUNK_HEADER_BYTES;
/**
 * Largest content (kind byte included) one message carries, in the worst case (an INITIAL message, which also holds
 * the X3DH header): what a 3-hop delivery leaves after the seal, the inner header and the ratchet overhead.
 */
export const MAX_CONTENT_BYTES =
  MAX_DELIVERY_ENVELOPE_BYTES - SEAL_OVERHEAD - INNER_HEADER_BYTES - X3DH_HEADER_LENGTH - RATCHET_MESSAGE_OVERHEAD;
/** Bytes a sent copy adds before the content it copies: kind and recipient address. */
export const SENT_COPY_HEADER_BYTES = 1 + 20;
/**
 * Largest text or binary message body: the content minus its kind byte, and minus the sent-copy header, so that the
 * copy to the sender's other clients (a SENT content wrapping this one) fits a message too.
 */
export const MAX_MESSAGE_BYTES = MAX_CONTENT_BYTES - 1 - SENT_COPY_HEADER_BYTES;
/** Largest group message body: the content minus kind, group id and the sender-key overhead. */
export const MAX_GROUP_MESSAGE_BYTES = MAX_CONTENT_BYTES - 1 - GROUP_ID_LENGTH - SENDER_KEY_MESSAGE_OVERHEAD;
/** Bytes of a group key's header before its member list: kind, group id, admin, membership version, count. */
export const GROUP_KEY_HEADER_BYTES = 1 + GROUP_ID_LENGTH + 20 + 4 + 1;
/**
 * Most members a group distribution lists: what fits beside the header and the distribution message in one content
 * (a one-byte count caps it at 255 too).
 */
export const MAX_GROUP_MEMBERS_ON_WIRE = Math.min(
  255,
  Math.floor((MAX_CONTENT_BYTES - GROUP_KEY_HEADER_BYTES - SENDER_KEY_DISTRIBUTION_LENGTH) / 20),
);
/** Highest membership version: it travels as a uint32. */
export const MAX_GROUP_VERSION = 0xffff_ffff;

const SEAL_INFO = new TextEncoder().encode("SendingNetwork_SealedSender_v1");
const ZERO_NONCE = new Uint8Array(12);

/** An envelope or content that does not parse or does not open. */
export class EnvelopeError extends Error {
  /** "Malformed" (does not parse) or "Unsealable" (the seal does not open with this key). */
  readonly code: "Malformed" | "Unsealable";
  constructor(code: "Malformed" | "Unsealable", message: string) {
    super(message);
    this.name = "EnvelopeError";
    this.code = code;
  }
}

const malformed = (message: string) => new EnvelopeError("Malformed", message);

/** An inner message: who sent it and the X3DH/ratchet bytes. */
export interface InnerMessage {
  readonly type: (typeof InnerType)[keyof typeof InnerType];
  /** Checksummed sender address. */
  readonly sender: string;
  readonly body: Uint8Array;
}

/** A text or binary content: what a user writes. */
export type DirectContent =
  | { readonly kind: typeof ContentKind.TEXT; readonly text: string }
  | { readonly kind: typeof ContentKind.BINARY; readonly data: Uint8Array };

/** A member's sender key for a group, with the group's admin, membership version and member list as it sees them. */
export interface GroupKeyContent {
  readonly kind: typeof ContentKind.GROUP_KEY;
  readonly groupId: Uint8Array;
  /** Checksummed address of the group's admin (the creator's user): only its clients change the membership. */
  readonly admin: string;
  /** Membership version (0 at create, one more per change) of `members`. */
  readonly version: number;
  /** Checksummed member addresses (users), distinct. */
  readonly members: readonly string[];
  /** The sender's sender-key distribution message (SENDER_KEY_DISTRIBUTION_LENGTH bytes). */
  readonly distribution: Uint8Array;
}

/** A decoded content. */
export type Content =
  | DirectContent
  | GroupKeyContent
  | { readonly kind: typeof ContentKind.GROUP_MESSAGE; readonly groupId: Uint8Array; readonly message: Uint8Array }
  | { readonly kind: typeof ContentKind.GROUP_KEY_REQUEST; readonly groupId: Uint8Array }
  | {
      readonly kind: typeof ContentKind.SENT;
      /** Checksummed address the copied message was sent to. */
      readonly to: string;
      readonly content: DirectContent;
    };

/** A piece of a backup blob. */
export interface BackupChunk {
  /** SHA-256 of the whole blob (the DID's backup pointer names it). */
  readonly digest: Uint8Array;
  readonly index: number;
  readonly count: number;
  readonly data: Uint8Array;
}

function sealKey(shared: Uint8Array, epk: Uint8Array, recipientKey: Uint8Array): Uint8Array {
  return hkdf(sha256, shared, concatBytes(epk, recipientKey), SEAL_INFO, 32);
}

/** Seals an inner message to the recipient's X25519 identity key. */
export function sealEnvelope(recipientKey: Uint8Array, inner: InnerMessage, random?: RandomBytes): Uint8Array {
  const plain = new ByteWriter()
    .u8(inner.type)
    .bytes(getBytes(getAddress(inner.sender)))
    .bytes(inner.body)
    .finish();
  const ephemeral = generateX25519KeyPair(random);
  const key = sealKey(dh(ephemeral.secretKey, recipientKey), ephemeral.publicKey, recipientKey);
  const out = new Uint8Array(SEAL_OVERHEAD + plain.length);
  out[0] = EnvelopeKind.SEALED;
  out.set(ephemeral.publicKey, 1);
  const aad = concatBytes(new Uint8Array([EnvelopeKind.SEALED]), ephemeral.publicKey, recipientKey);
  aeadSeal(key, ZERO_NONCE, aad, plain, out.subarray(33));
  return out;
}

/** Opens a sealed envelope with the recipient's identity key pair. Throws EnvelopeError. */
export function openEnvelope(
  envelope: Uint8Array,
  recipient: { readonly secretKey: Uint8Array; readonly publicKey: Uint8Array },
): InnerMessage {
  const where = "openEnvelope";
  if (envelope.length < SEAL_OVERHEAD + INNER_HEADER_BYTES || envelope[0] !== EnvelopeKind.SEALED) {
    throw malformed(`${where}: expected a sealed envelope of at least ${SEAL_OVERHEAD + INNER_HEADER_BYTES} bytes`);
  }
  const epk = envelope.subarray(1, 33);
  let shared: Uint8Array;
  try {
    shared = dh(recipient.secretKey, epk);
  } catch {
    throw new EnvelopeError("Unsealable", `${where}: the ephemeral key is not usable`);
  }
  const aad = concatBytes(new Uint8Array([EnvelopeKind.SEALED]), epk, recipient.publicKey);
  const plain = aeadOpen(sealKey(shared, epk, recipient.publicKey), ZERO_NONCE, aad, envelope.subarray(33));
  if (plain === undefined) throw new EnvelopeError("Unsealable", `${where}: the seal does not open with this key`);
  const type = plain[0];
  if (type !== InnerType.INITIAL && type !== InnerType.RATCHET) throw malformed(`${where}: unknown inner type ${type}`);
  return { type, sender: getAddress(hexlify(plain.subarray(1, 21))), body: plain.slice(21) };
}

/** Encodes a content. */
export function encodeContent(content: Content): Uint8Array {
  const w = new ByteWriter().u8(content.kind);
  switch (content.kind) {
    case ContentKind.TEXT:
      w.bytes(new TextEncoder().encode(content.text));
      break;
    case ContentKind.BINARY:
      w.bytes(content.data);
      break;
    case ContentKind.GROUP_KEY:
      if (content.groupId.length !== GROUP_ID_LENGTH) throw malformed("encodeContent: expected a 32-byte group id");
      if (content.members.length < 1 || content.members.length > MAX_GROUP_MEMBERS_ON_WIRE) {
        throw malformed(`encodeContent: expected 1 to ${MAX_GROUP_MEMBERS_ON_WIRE} group members in one message`);
      }
      if (!Number.isInteger(content.version) || content.version < 0 || content.version > MAX_GROUP_VERSION) {
        throw malformed(`encodeContent: expected a membership version in [0, 2^32 - 1], got ${content.version}`);
      }
      w.bytes(content.groupId)
        .bytes(getBytes(getAddress(content.admin)))
        .u32(content.version);
      w.u8(content.members.length);
      for (const m of content.members) w.bytes(getBytes(getAddress(m)));
      w.bytes(content.distribution);
      break;
    case ContentKind.GROUP_MESSAGE:
      if (content.groupId.length !== GROUP_ID_LENGTH) throw malformed("encodeContent: expected a 32-byte group id");
      w.bytes(content.groupId).bytes(content.message);
      break;
    case ContentKind.GROUP_KEY_REQUEST:
      if (content.groupId.length !== GROUP_ID_LENGTH) throw malformed("encodeContent: expected a 32-byte group id");
      w.bytes(content.groupId);
      break;
    case ContentKind.SENT:
      if (content.content.kind !== ContentKind.TEXT && content.content.kind !== ContentKind.BINARY) {
        throw malformed("encodeContent: a sent copy holds a text or binary content");
      }
      w.bytes(getBytes(getAddress(content.to))).bytes(encodeContent(content.content));
      break;
  }
  const out = w.finish();
  if (out.length > MAX_CONTENT_BYTES) {
    throw malformed(`encodeContent: content of ${out.length} bytes exceeds ${MAX_CONTENT_BYTES}`);
  }
  return out;
}

/** Parses a content strictly. Throws EnvelopeError("Malformed"). */
export function parseContent(bytes: Uint8Array): Content {
  const where = "parseContent";
  if (bytes.length < 1) throw malformed(`${where}: empty content`);
  const rest = bytes.subarray(1);
  switch (bytes[0]) {
    case ContentKind.TEXT: {
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(rest);
      } catch {
        throw malformed(`${where}: expected UTF-8 text`);
      }
      return { kind: ContentKind.TEXT, text };
    }
    case ContentKind.BINARY:
      return { kind: ContentKind.BINARY, data: rest.slice() };
    case ContentKind.GROUP_KEY: {
      const r = new ByteReader(rest, where, malformed);
      const groupId = r.bytes(GROUP_ID_LENGTH, "group id");
      const admin = getAddress(hexlify(r.bytes(20, "admin")));
      const version = r.u32("membership version");
      const count = r.u8("member count");
      if (count < 1 || count > MAX_GROUP_MEMBERS_ON_WIRE) {
        throw malformed(`${where}: expected 1 to ${MAX_GROUP_MEMBERS_ON_WIRE} group members, got ${count}`);
      }
      const members: string[] = [];
      for (let i = 0; i < count; i++) {
        const member = getAddress(hexlify(r.bytes(20, "member")));
        if (members.includes(member)) throw malformed(`${where}: expected distinct group members, got ${member} twice`);
        members.push(member);
      }
      const distribution = r.bytes(SENDER_KEY_DISTRIBUTION_LENGTH, "distribution");
      r.end();
      return { kind: ContentKind.GROUP_KEY, groupId, admin, version, members, distribution };
    }
    case ContentKind.GROUP_KEY_REQUEST: {
      if (rest.length !== GROUP_ID_LENGTH) {
        throw malformed(`${where}: expected a ${GROUP_ID_LENGTH}-byte group id in a key request, got ${rest.length}`);
      }
      return { kind: ContentKind.GROUP_KEY_REQUEST, groupId: rest.slice() };
    }
    case ContentKind.GROUP_MESSAGE: {
      if (rest.length <= GROUP_ID_LENGTH) throw malformed(`${where}: group message too short`);
      return {
        kind: ContentKind.GROUP_MESSAGE,
        groupId: rest.slice(0, GROUP_ID_LENGTH),
        message: rest.slice(GROUP_ID_LENGTH),
      };
    }
    case ContentKind.SENT: {
      if (rest.length < 21) throw malformed(`${where}: sent copy too short`);
      const copied = parseContent(rest.subarray(20));
      if (copied.kind !== ContentKind.TEXT && copied.kind !== ContentKind.BINARY) {
        throw malformed(`${where}: expected a text or binary content in a sent copy, got kind ${rest[20]}`);
      }
      return { kind: ContentKind.SENT, to: getAddress(hexlify(rest.subarray(0, 20))), content: copied };
    }
    default:
      throw malformed(`${where}: unknown content kind ${bytes[0]}`);
  }
}

/** Splits a backup blob into chunk envelopes (at most 65,535 chunks). */
export function backupChunks(blob: Uint8Array): Uint8Array[] {
  const digest = sha256(blob);
  const count = Math.max(1, Math.ceil(blob.length / MAX_BACKUP_CHUNK_BYTES));
  if (count > 0xffff) throw malformed(`backupChunks: a blob of ${blob.length} bytes needs too many chunks`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const data = blob.subarray(i * MAX_BACKUP_CHUNK_BYTES, (i + 1) * MAX_BACKUP_CHUNK_BYTES);
    out.push(new ByteWriter().u8(EnvelopeKind.BACKUP).bytes(digest).u16(i).u16(count).bytes(data).finish());
  }
  return out;
}

/** Parses a backup chunk envelope. Throws EnvelopeError("Malformed"). */
export function parseBackupChunk(envelope: Uint8Array): BackupChunk {
  const where = "parseBackupChunk";
  if (envelope.length < BACKUP_CHUNK_HEADER_BYTES || envelope[0] !== EnvelopeKind.BACKUP) {
    throw malformed(`${where}: expected a backup chunk envelope`);
  }
  const r = new ByteReader(envelope.subarray(1, BACKUP_CHUNK_HEADER_BYTES), where, malformed);
  const digest = r.bytes(32, "digest");
  const index = r.u16("index");
  const count = r.u16("count");
  if (count === 0 || index >= count) throw malformed(`${where}: chunk ${index} of ${count}`);
  return { digest, index, count, data: envelope.slice(BACKUP_CHUNK_HEADER_BYTES) };
}
