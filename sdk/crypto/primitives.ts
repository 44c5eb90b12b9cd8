/**
 * The cryptographic primitives under X3DH, the Double Ratchet and sender keys, each a thin call into @noble:
 *
 *   - X25519 key agreement            @noble/curves  x25519 (RFC 7748; low-order points rejected by noble)
 *   - Ed25519 signatures              @noble/curves  ed25519 (RFC 8032, verified strictly: zip215 = false)
 *   - HKDF-SHA-256, HMAC-SHA-256      @noble/hashes
 *   - ChaCha20-Poly1305 AEAD          @noble/ciphers (RFC 8439), a random 96-bit nonce per message
 *
 * and the three KDFs the specifications define on top of them (X3DH §2.2, Double Ratchet §5.2). Nothing below the
 * protocol level is written here: the KDFs only fix inputs, constants and output splits. docs/CRYPTO.md explains the
 * choices.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac, type _HMAC } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes as nobleRandomBytes } from "@noble/hashes/utils.js";
import { concatBytes, wipe } from "./bytes";

/** A source of random bytes. Production uses the platform CSPRNG; tests inject a fixed one to pin vectors. */
export type RandomBytes = (length: number) => Uint8Array;

/** The platform CSPRNG (`crypto.getRandomValues` through @noble/hashes). */
export const defaultRandomBytes: RandomBytes = (length) => nobleRandomBytes(length);

const NONCE_POOL_BYTES = 4096; // 341 nonces per CSPRNG call: a call costs about as much as hashing a block
let noncePool = new Uint8Array(0);
let noncePoolOffset = 0;

/**
 * A fresh random nonce of `length` bytes: from `random` when one is injected (tests), else from a buffer refilled
 * from the platform CSPRNG. Nonces are public, so buffering them exposes nothing.
 */
export function randomNonce(length: number, random?: RandomBytes): Uint8Array {
  if (random !== undefined) {
    const nonce = random(length);
    if (!(nonce instanceof Uint8Array) || nonce.length !== length) {
      throw new Error(`randomNonce: expected the random source to return ${length} bytes`);
    }
    return nonce;
  }
  if (noncePool.length - noncePoolOffset < length) {
    noncePool = nobleRandomBytes(NONCE_POOL_BYTES);
    noncePoolOffset = 0;
  }
  const nonce = noncePool.slice(noncePoolOffset, noncePoolOffset + length);
  noncePoolOffset += length;
  return nonce;
}

/** A secret key and its public key, 32 bytes each (X25519 or Ed25519, by context). */
export interface KeyPair {
  /** The 32-byte secret key (X25519 scalar or Ed25519 seed). */
  readonly secretKey: Uint8Array;
  /** The 32-byte public key (X25519 u-coordinate or Ed25519 point encoding). */
  readonly publicKey: Uint8Array;
}

/** Length of X25519 and Ed25519 keys, of HKDF-SHA-256/HMAC-SHA-256 outputs, and of ChaCha20-Poly1305 keys. */
export const KEY_LENGTH = 32;
/** Length of an Ed25519 signature. */
export const SIGNATURE_LENGTH = 64;
/**
 * Length of a ChaCha20-Poly1305 nonce. Random 96-bit nonces are safe here because every message key encrypts one
 * message (a few if a stale state were restored): the birthday bound that rules them out for long-lived keys needs
 * billions of messages under one key.
 */
export const NONCE_LENGTH = 12;
/** Length of a Poly1305 tag (never truncated: Double Ratchet §6.6). */
export const TAG_LENGTH = 16;

/** HKDF info of the X3DH KDF (X3DH §2.1 "info": an ASCII string identifying the application). */
export const X3DH_INFO = "SendingNetwork_X3DH_v1";
/** HKDF info of KDF_RK (Double Ratchet §5.2 recommends an application-specific info). */
export const RATCHET_ROOT_INFO = "SendingNetwork_DoubleRatchet_v1";

const X3DH_INFO_BYTES = new TextEncoder().encode(X3DH_INFO);
const RATCHET_ROOT_INFO_BYTES = new TextEncoder().encode(RATCHET_ROOT_INFO);
/** X3DH §2.2: F is 32 0xFF bytes for X25519, so the KDF input never equals an XEdDSA/Ed25519 hash input prefix. */
const X3DH_F = new Uint8Array(32).fill(0xff);
const X3DH_SALT = new Uint8Array(32);
const CK_MESSAGE_CONSTANT = Uint8Array.of(0x01);
const CK_CHAIN_CONSTANT = Uint8Array.of(0x02);

/** A fresh X25519 key pair from `random` (32 bytes, clamped by X25519 itself). */
export function generateX25519KeyPair(random: RandomBytes = defaultRandomBytes): KeyPair {
  const secretKey = random(KEY_LENGTH);
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== KEY_LENGTH) {
    throw new Error(`generateX25519KeyPair: expected the random source to return ${KEY_LENGTH} bytes`);
  }
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

/** A fresh Ed25519 key pair from `random` (the 32-byte RFC 8032 seed). */
export function generateEd25519KeyPair(random: RandomBytes = defaultRandomBytes): KeyPair {
  const secretKey = random(KEY_LENGTH);
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== KEY_LENGTH) {
    throw new Error(`generateEd25519KeyPair: expected the random source to return ${KEY_LENGTH} bytes`);
  }
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

/** The X25519 public key of a secret key. */
export function x25519PublicKey(secretKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secretKey);
}

/** The Ed25519 public key of a secret key (seed). */
export function ed25519PublicKey(secretKey: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(secretKey);
}

/**
 * X25519(secretKey, publicKey). Throws (noble's error) for a low-order or otherwise invalid public key; callers turn
 * that into their typed error.
 */
export function dh(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return x25519.getSharedSecret(secretKey, publicKey);
}

/** Ed25519 signature of `message`. */
export function sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, secretKey);
}

/**
 * Strict Ed25519 verification (RFC 8032 encodings only, zip215 = false, so a signature has one valid encoding).
 * Returns false, never throws, for a malformed key or signature.
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * The X3DH KDF (X3DH §2.2): 32 bytes of HKDF-SHA-256 with IKM = F || KM (F = 32 0xFF bytes), salt = 32 zero
 * bytes, info = "SendingNetwork_X3DH_v1".
 */
export function x3dhKdf(keyMaterial: Uint8Array): Uint8Array {
  const ikm = concatBytes(X3DH_F, keyMaterial);
  try {
    return hkdf(sha256, ikm, X3DH_SALT, X3DH_INFO_BYTES, KEY_LENGTH);
  } finally {
    wipe(ikm);
  }
}

/**
 * KDF_RK(rk, dh_out) (Double Ratchet §5.2): HKDF-SHA-256 with salt = rk, IKM = dh_out,
 * info = "SendingNetwork_DoubleRatchet_v1", 64 bytes split into the next root key and a chain key.
 */
export function kdfRk(rootKey: Uint8Array, dhOutput: Uint8Array): { rootKey: Uint8Array; chainKey: Uint8Array } {
  const out = hkdf(sha256, dhOutput, rootKey, RATCHET_ROOT_INFO_BYTES, 2 * KEY_LENGTH);
  const result = { rootKey: out.slice(0, KEY_LENGTH), chainKey: out.slice(KEY_LENGTH) };
  wipe(out);
  return result;
}

/**
 * Reused as the target of `_cloneInto`, so KDF_CK allocates one HMAC instead of two. Safe because kdfCk is
 * synchronous (nothing can interleave) and noble zeroes both hash states when a digest completes.
 */
let ckScratch: _HMAC<ReturnType<typeof sha256.create>> | undefined;

/**
 * KDF_CK(ck) (Double Ratchet §5.2): message key = HMAC-SHA-256(ck, 0x01), next chain key = HMAC-SHA-256(ck, 0x02).
 * Both HMACs share the key, so the keyed state (ipad and opad blocks) is computed once and cloned: the same outputs
 * for 6 SHA-256 compressions instead of 8 (tests check them against node:crypto createHmac). Sender-key chains use
 * the same function.
 */
export function kdfCk(chainKey: Uint8Array): { messageKey: Uint8Array; chainKey: Uint8Array } {
  const keyed = hmac.create(sha256, chainKey);
  const forMessage = keyed._cloneInto(ckScratch);
  const messageKey = new Uint8Array(KEY_LENGTH);
  const nextChainKey = new Uint8Array(KEY_LENGTH);
  forMessage.update(CK_MESSAGE_CONSTANT).digestInto(messageKey);
  keyed.update(CK_CHAIN_CONSTANT).digestInto(nextChainKey);
  ckScratch = forMessage;
  return { messageKey, chainKey: nextChainKey };
}

/**
 * ChaCha20-Poly1305 encryption of `plaintext` under a one-time message key, written into `output`
 * (plaintext.length + 16 bytes, may be a subarray of a larger message buffer).
 */
export function aeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  associatedData: Uint8Array,
  plaintext: Uint8Array,
  output: Uint8Array,
): void {
  if (output.byteOffset % 4 === 0) {
    chacha20poly1305(key, nonce, associatedData).encrypt(plaintext, output);
    return;
  }
  // noble XORs 4-byte words only on aligned buffers and falls back to bytes otherwise (4x the loop); sealing into
  // a fresh, aligned array and copying it is faster than that.
  const sealed = chacha20poly1305(key, nonce, associatedData).encrypt(plaintext);
  output.set(sealed);
}

/**
 * ChaCha20-Poly1305 decryption: the plaintext, or undefined when the tag does not verify (wrong key, nonce,
 * associated data or ciphertext). The tag is checked before anything is decrypted.
 */
export function aeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  associatedData: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array | undefined {
  if (ciphertext.length < TAG_LENGTH) return undefined;
  try {
    return chacha20poly1305(key, nonce, associatedData).decrypt(ciphertext);
  } catch {
    return undefined;
  }
}
