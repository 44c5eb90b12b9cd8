/**
 * The layered packet: a sender wraps a payload in one layer per hop (2 or 3 edge nodes), every packet on every link
 * is exactly PACKET_BYTES, and each hop, with its X25519 relay key, learns only the hop after it (or, at the exit,
 * the recipient), never the rest of the route.
 *
 * Construction: a simplification of Sphinx (Danezis & Goldberg 2009) without reply blocks and without key blinding.
 *
 *   packet = epk (32) || mac (16) || body (PACKET_BYTES - 48)
 *
 * For the hop with relay key R and the layer's fresh ephemeral key e (epk = e·G), s = X25519(e, R) and
 * HKDF-SHA-256(ikm = s, salt = epk || R, info = "SendingNetwork_Onion_v1") gives 64 bytes: an encryption key and a
 * MAC key. Peeling:
 *
 *   1. mac must equal HMAC-SHA-256(macKey, body) cut to 16 bytes (checked before anything else, in constant time);
 *   2. (header || nextBody) = (body || 0^HEADER_BYTES) XOR ChaCha20(encKey, nonce 0)[0 .. BODY + HEADER_BYTES];
 *   3. header is either forward(next peer id, next epk, next mac) or deliver(recipient id, payload length); a
 *      forwarded packet is next epk || next mac || nextBody, again PACKET_BYTES.
 *
 * Step 2 is how sizes never shrink: each hop takes HEADER_BYTES off the front and appends HEADER_BYTES of its own
 * keystream at the end (Sphinx's "filler"). Because that keystream is a function of the hop's key, the sender can
 * compute in advance every byte every hop will see, and so the MAC of each layer covers the whole packet: changing
 * any byte anywhere makes the next peel fail. Encrypt-then-MAC with ChaCha20 and HMAC is the AEAD here: a
 * ChaCha20-Poly1305 tag at the end of each layer could not be precomputed through the filler. Nonce 0 is safe
 * because every key comes from a fresh ephemeral key and encrypts one body.
 *
 * What it protects: a hop sees the previous and next hop (the entry also sees the sender's connection, the exit
 * the recipient id), never both ends; links see same-size packets whose bytes change completely at each hop.
 * What it does not: timing and volume correlation (no mixing delays or cover traffic here), an adversary that
 * holds the entry and the exit hop, the hop count being at most 3, replays (a hop must remember the epk of packets
 * it peeled for as long as the relay key lives: left to the node), and the payload itself, which must already be
 * end-to-end encrypted (the Double Ratchet envelope) since the exit reads it.
 */
import { chacha20 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesEqual, concatBytes } from "../crypto/bytes";
import { defaultRandomBytes, type RandomBytes } from "../crypto/primitives";

/**
 * Every packet on every link is 4096 bytes: one memory page and a few TCP segments, large enough for a ratchet
 * message with a few kilobytes of text after 3 layers of overhead, small enough that padding short messages (most
 * chat messages are under 200 bytes) costs little. Longer content is split by the client or sent as an attachment.
 */
export const PACKET_BYTES = 4096;
/** Bytes of the X25519 ephemeral public key at the head of each layer. */
export const EPK_BYTES = 32;
/** Bytes of the layer MAC (HMAC-SHA-256 cut to 128 bits: forging one needs 2^128 work per attempt offline). */
export const MAC_BYTES = 16;
/** Longest hop (libp2p peer id, binary multihash) or recipient id: an Ed25519 peer id is 38 bytes. */
export const MAX_ID_BYTES = 64;
/** Bytes of a layer header: kind (1) || id length (1) || id padded to 64 || next epk (32) || next mac (16). */
export const HEADER_BYTES = 1 + 1 + MAX_ID_BYTES + EPK_BYTES + MAC_BYTES;
/** Bytes of the encrypted body after epk and mac. */
export const BODY_BYTES = PACKET_BYTES - EPK_BYTES - MAC_BYTES;
/** Fewest hops: with one, the single node would see both sender and recipient. */
export const MIN_HOPS = 2;
/** Most hops: a third adds unlinkability against one colluding pair; more would cost payload and latency. */
export const MAX_HOPS = 3;
/**
 * Largest payload, the same for 2 and 3 hops so the payload length says nothing about the route: the body less
 * one header per possible hop (the exit's own header, and the filler of up to MAX_HOPS - 1 earlier hops).
 */
export const MAX_PAYLOAD_BYTES = BODY_BYTES - MAX_HOPS * HEADER_BYTES;

const ONION_INFO = new TextEncoder().encode("SendingNetwork_Onion_v1");
/** `peel`'s input to the stream cipher: a body, then HEADER_BYTES of zeros. */
const PEEL_SCRATCH = new Uint8Array(BODY_BYTES + HEADER_BYTES);
const ZERO_NONCE = new Uint8Array(12);
const KIND_FORWARD = 0x01;
const KIND_DELIVER = 0x02;

/** Why a packet could not be built or peeled. */
export type OnionErrorCode =
  | "ONION_BAD_SIZE" // a packet that is not exactly PACKET_BYTES
  | "ONION_BAD_MAC" // the MAC does not verify: tampered, or not for this relay key
  | "ONION_BAD_HEADER" // a header that authenticated but does not parse (a malformed sender)
  | "ONION_PAYLOAD_TOO_LARGE" // a payload above MAX_PAYLOAD_BYTES
  | "ONION_BAD_ROUTE" // a route of the wrong length or with a malformed hop
  | "ONION_BAD_KEY"; // a relay key or ephemeral key of the wrong size or of low order

/** A layered packet that could not be built or peeled. */
export class OnionError extends Error {
  readonly code: OnionErrorCode;
  constructor(code: OnionErrorCode, message: string) {
    super(message);
    this.name = "OnionError";
    this.code = code;
  }
}

/** One edge node of a route: its libp2p peer id (binary multihash) and its X25519 relay public key. */
export interface Hop {
  readonly peerId: Uint8Array;
  readonly relayPublicKey: Uint8Array;
}

/** What a hop does with a packet it peeled. */
export type PeelResult =
  | { readonly forward: Uint8Array; readonly packet: Uint8Array }
  | { readonly deliver: Uint8Array; readonly payload: Uint8Array };

/**
 * The symmetric primitives of a layer. The SDK uses @noble's (`NOBLE_ONION_SYMMETRIC`, which run in browsers too);
 * an edge node passes native ones (node/onionNative.ts), which must compute the same bytes: a test holds both to it.
 */
export interface OnionSymmetric {
  /** HKDF-SHA-256 (RFC 5869) of `length` bytes. */
  readonly hkdfSha256: (ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number) => Uint8Array;
  /** HMAC-SHA-256, all 32 bytes. */
  readonly hmacSha256: (key: Uint8Array, data: Uint8Array) => Uint8Array;
  /** `data` XOR the ChaCha20 (RFC 8439) keystream of `key` with nonce 0 and counter 0, in a new array. */
  readonly chacha20: (key: Uint8Array, data: Uint8Array) => Uint8Array;
}

/** The layer's primitives on @noble/hashes and @noble/ciphers. */
export const NOBLE_ONION_SYMMETRIC: OnionSymmetric = {
  hkdfSha256: (ikm, salt, info, length) => hkdf(sha256, ikm, salt, info, length),
  hmacSha256: (key, data) => hmac(sha256, key, data),
  chacha20: (key, data) => chacha20(key, ZERO_NONCE, data),
};

interface LayerKeys {
  readonly encKey: Uint8Array;
  readonly macKey: Uint8Array;
}

function layerKeys(
  symmetric: OnionSymmetric,
  shared: Uint8Array,
  epk: Uint8Array,
  relayPublicKey: Uint8Array,
): LayerKeys {
  const okm = symmetric.hkdfSha256(shared, concatBytes(epk, relayPublicKey), ONION_INFO, 64);
  return { encKey: okm.slice(0, 32), macKey: okm.slice(32) };
}

function layerMac(symmetric: OnionSymmetric, macKey: Uint8Array, body: Uint8Array): Uint8Array {
  return symmetric.hmacSha256(macKey, body).subarray(0, MAC_BYTES);
}

function keystream(symmetric: OnionSymmetric, encKey: Uint8Array): Uint8Array {
  return symmetric.chacha20(encKey, new Uint8Array(BODY_BYTES + HEADER_BYTES));
}

function xorInto(target: Uint8Array, source: Uint8Array): void {
  for (let i = 0; i < target.length; i++) target[i] ^= source[i];
}

function checkId(id: unknown, what: string): Uint8Array {
  if (!(id instanceof Uint8Array) || id.length === 0 || id.length > MAX_ID_BYTES) {
    throw new OnionError(
      "ONION_BAD_ROUTE",
      `wrapPacket: expected ${what} of 1..${MAX_ID_BYTES} bytes, got ${id instanceof Uint8Array ? id.length : typeof id}`,
    );
  }
  return id;
}

/**
 * Wraps `payload` for `recipientId` through `route` (2 or 3 hops, entry first). Returns the PACKET_BYTES packet
 * to send to route[0]. Throws OnionError("ONION_PAYLOAD_TOO_LARGE") above MAX_PAYLOAD_BYTES.
 */
export function wrapPacket(
  route: readonly Hop[],
  recipientId: Uint8Array,
  payload: Uint8Array,
  random: RandomBytes = defaultRandomBytes,
): Uint8Array {
  if (!Array.isArray(route) || route.length < MIN_HOPS || route.length > MAX_HOPS) {
    throw new OnionError("ONION_BAD_ROUTE", `wrapPacket: expected ${MIN_HOPS} to ${MAX_HOPS} hops`);
  }
  checkId(recipientId, "a recipient id");
  if (!(payload instanceof Uint8Array)) throw new OnionError("ONION_BAD_ROUTE", "wrapPacket: expected a Uint8Array");
  if (payload.length > MAX_PAYLOAD_BYTES) {
    throw new OnionError(
      "ONION_PAYLOAD_TOO_LARGE",
      `wrapPacket: payload of ${payload.length} bytes exceeds MAX_PAYLOAD_BYTES ${MAX_PAYLOAD_BYTES}`,
    );
  }
  const n = route.length;
  const epks: Uint8Array[] = [];
  const keys: LayerKeys[] = [];
  const streams: Uint8Array[] = [];
  for (const hop of route) {
    checkId(hop.peerId, "a hop peer id");
    if (!(hop.relayPublicKey instanceof Uint8Array) || hop.relayPublicKey.length !== 32) {
      throw new OnionError("ONION_BAD_KEY", "wrapPacket: expected a 32-byte X25519 relay public key");
    }
    const secret = random(32);
    const epk = x25519.getPublicKey(secret);
    let shared: Uint8Array;
    try {
      shared = x25519.getSharedSecret(secret, hop.relayPublicKey);
    } catch {
      throw new OnionError("ONION_BAD_KEY", "wrapPacket: relay public key of low order");
    }
    secret.fill(0);
    const k = layerKeys(NOBLE_ONION_SYMMETRIC, shared, epk, hop.relayPublicKey);
    epks.push(epk);
    keys.push(k);
    streams.push(keystream(NOBLE_ONION_SYMMETRIC, k.encKey));
  }

  // Filler: the tail each earlier hop's keystream appends, as the later hops will see it.
  let filler: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < n - 1; i++) {
    const next = concatBytes(filler, new Uint8Array(HEADER_BYTES));
    xorInto(next, streams[i].subarray(BODY_BYTES - filler.length, BODY_BYTES + HEADER_BYTES));
    filler = next;
  }

  // Innermost layer: deliver header || payload || random padding, with the filler as its last bytes.
  const plain = new Uint8Array(BODY_BYTES);
  plain[0] = KIND_DELIVER;
  plain[1] = recipientId.length;
  plain.set(recipientId, 2);
  const lengthAt = 2 + MAX_ID_BYTES;
  plain[lengthAt] = payload.length >>> 8;
  plain[lengthAt + 1] = payload.length & 0xff;
  plain.set(payload, HEADER_BYTES);
  const padStart = HEADER_BYTES + payload.length;
  plain.set(random(BODY_BYTES - padStart), padStart);
  let body: Uint8Array = plain;
  xorInto(body, streams[n - 1]);
  body.set(filler, BODY_BYTES - filler.length);
  let mac = layerMac(NOBLE_ONION_SYMMETRIC, keys[n - 1].macKey, body);

  for (let i = n - 2; i >= 0; i--) {
    const header = new Uint8Array(HEADER_BYTES);
    header[0] = KIND_FORWARD;
    header[1] = route[i + 1].peerId.length;
    header.set(route[i + 1].peerId, 2);
    header.set(epks[i + 1], 2 + MAX_ID_BYTES);
    header.set(mac, 2 + MAX_ID_BYTES + EPK_BYTES);
    const outer = concatBytes(header, body.subarray(0, BODY_BYTES - HEADER_BYTES));
    xorInto(outer, streams[i]);
    body = outer;
    mac = layerMac(NOBLE_ONION_SYMMETRIC, keys[i].macKey, body);
  }
  return concatBytes(epks[0], mac, body);
}

function allZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

/** How a node peels faster: values it computes once, and native primitives that compute the same bytes. */
export interface PeelOptions {
  /** The node's relay public key, to save the scalar multiplication that would derive it on every packet. */
  readonly relayPublicKey?: Uint8Array;
  /**
   * X25519 of the node's relay secret key with the packet's ephemeral key, computed another way (the daemon uses
   * OpenSSL's, several times faster than the JavaScript one); it must throw for a low-order key, as @noble's does.
   */
  readonly sharedSecret?: (epk: Uint8Array) => Uint8Array;
  /** The symmetric primitives (default NOBLE_ONION_SYMMETRIC). */
  readonly symmetric?: OnionSymmetric;
}

/**
 * Peels one layer with this node's X25519 relay secret key: {forward: next peer id, packet} to send on, or
 * {deliver: recipient id, payload} at the exit. Throws OnionError for a packet of the wrong size, a MAC that does not
 * verify (tampered, or for another key), or a malformed header.
 */
export function peel(packet: Uint8Array, relayPrivateKey: Uint8Array, options: PeelOptions = {}): PeelResult {
  if (!(packet instanceof Uint8Array) || packet.length !== PACKET_BYTES) {
    throw new OnionError(
      "ONION_BAD_SIZE",
      `peel: expected a ${PACKET_BYTES}-byte packet, got ${packet instanceof Uint8Array ? packet.length : typeof packet}`,
    );
  }
  if (!(relayPrivateKey instanceof Uint8Array) || relayPrivateKey.length !== 32) {
    throw new OnionError("ONION_BAD_KEY", "peel: expected a 32-byte X25519 relay secret key");
  }
  const { relayPublicKey, sharedSecret, symmetric = NOBLE_ONION_SYMMETRIC } = options;
  if (relayPublicKey !== undefined && (!(relayPublicKey instanceof Uint8Array) || relayPublicKey.length !== 32)) {
    throw new OnionError("ONION_BAD_KEY", "peel: expected a 32-byte X25519 relay public key");
  }
  const epk = packet.subarray(0, EPK_BYTES);
  const mac = packet.subarray(EPK_BYTES, EPK_BYTES + MAC_BYTES);
  const body = packet.subarray(EPK_BYTES + MAC_BYTES);
  let shared: Uint8Array;
  try {
    shared = sharedSecret === undefined ? x25519.getSharedSecret(relayPrivateKey, epk) : sharedSecret(epk);
  } catch {
    throw new OnionError("ONION_BAD_MAC", "peel: ephemeral key of low order");
  }
  const keys = layerKeys(symmetric, shared, epk, relayPublicKey ?? x25519.getPublicKey(relayPrivateKey));
  if (!bytesEqual(layerMac(symmetric, keys.macKey, body), mac)) {
    throw new OnionError("ONION_BAD_MAC", "peel: MAC does not verify (tampered, or not for this relay key)");
  }
  // (body || 0^HEADER_BYTES) XOR the keystream, in one pass. The padded input lives in a scratch buffer whose tail
  // stays zero (only its first BODY_BYTES are ever written; `chacha20` returns a new array): peel runs to its end
  // without yielding, so no two peels share it at once.
  PEEL_SCRATCH.set(body);
  const plain = symmetric.chacha20(keys.encKey, PEEL_SCRATCH);
  const kind = plain[0];
  const idLength = plain[1];
  if (idLength === 0 || idLength > MAX_ID_BYTES || !allZero(plain.subarray(2 + idLength, 2 + MAX_ID_BYTES))) {
    throw new OnionError("ONION_BAD_HEADER", `peel: expected an id of 1..${MAX_ID_BYTES} bytes, zero-padded`);
  }
  const id = plain.slice(2, 2 + idLength);
  const rest = 2 + MAX_ID_BYTES;
  if (kind === KIND_FORWARD) {
    const next = new Uint8Array(PACKET_BYTES);
    next.set(plain.subarray(rest, rest + EPK_BYTES + MAC_BYTES));
    next.set(plain.subarray(HEADER_BYTES), EPK_BYTES + MAC_BYTES);
    return { forward: id, packet: next };
  }
  if (kind === KIND_DELIVER) {
    const length = (plain[rest] << 8) | plain[rest + 1];
    if (length > MAX_PAYLOAD_BYTES || !allZero(plain.subarray(rest + 2, HEADER_BYTES))) {
      throw new OnionError("ONION_BAD_HEADER", `peel: expected a payload length ≤ ${MAX_PAYLOAD_BYTES}, zero-padded`);
    }
    return { deliver: id, payload: plain.slice(HEADER_BYTES, HEADER_BYTES + length) };
  }
  throw new OnionError("ONION_BAD_HEADER", `peel: expected header kind 1 (forward) or 2 (deliver), got ${kind}`);
}
