/**
 * An independent reference for the crypto tests: the same primitives from node:crypto (OpenSSL), not @noble, so the
 * known-answer vectors under test/vectors/ are checked against a second implementation and are not only
 * self-consistent. Also small helpers the crypto tests share. Holds no tests.
 */
import { expect } from "chai";
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  sign as nodeSign,
  type KeyObject,
} from "node:crypto";

const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

const x25519Private = (secret: Uint8Array): KeyObject =>
  createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, secret]), format: "der", type: "pkcs8" });
const ed25519Private = (seed: Uint8Array): KeyObject =>
  createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
const rawPublic = (key: KeyObject): Uint8Array =>
  new Uint8Array((createPublicKey(key).export({ format: "der", type: "spki" }) as Buffer).subarray(-32));

/** Reference computations by node:crypto. */
export const reference = {
  /** X25519 public key of a 32-byte secret. */
  x25519PublicKey: (secret: Uint8Array): Uint8Array => rawPublic(x25519Private(secret)),
  /** X25519(secret, public). */
  x25519: (secret: Uint8Array, publicKey: Uint8Array): Uint8Array =>
    new Uint8Array(
      diffieHellman({
        privateKey: x25519Private(secret),
        publicKey: createPublicKey({
          key: Buffer.concat([X25519_SPKI_PREFIX, publicKey]),
          format: "der",
          type: "spki",
        }),
      }),
    ),
  /** Ed25519 public key of a 32-byte seed. */
  ed25519PublicKey: (seed: Uint8Array): Uint8Array => rawPublic(ed25519Private(seed)),
  /** Ed25519 signature (deterministic, RFC 8032). */
  ed25519Sign: (seed: Uint8Array, message: Uint8Array): Uint8Array =>
    new Uint8Array(nodeSign(null, message, ed25519Private(seed))),
  /** HKDF-SHA-256. */
  hkdf: (ikm: Uint8Array, salt: Uint8Array, info: string, length: number): Uint8Array =>
    new Uint8Array(hkdfSync("sha256", ikm, salt, Buffer.from(info, "utf8"), length)),
  /** HMAC-SHA-256. */
  hmac: (key: Uint8Array, message: Uint8Array): Uint8Array =>
    new Uint8Array(createHmac("sha256", key).update(message).digest()),
};

/** Hex of bytes. */
export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
/** Bytes of hex. */
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
/** UTF-8 bytes of a string. */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
/** The string of UTF-8 bytes. */
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A copy of `bytes` with bit 0 of byte `index` flipped. */
export function flip(bytes: Uint8Array, index: number): Uint8Array {
  const out = bytes.slice();
  out[index] ^= 1;
  return out;
}

/**
 * Asserts that `fn` throws an instance of `type` whose `code` is `code`, and returns it. (chai's `to.throw` checks
 * the class but not our `code` field.)
 */
export function expectError<E extends Error & { code: string }>(
  fn: () => unknown,
  type: abstract new (...args: never[]) => E,
  code: string,
): E {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, "expected a throw").to.be.instanceOf(type);
  expect((caught as E).code).to.equal(code, (caught as E).message);
  return caught as E;
}

/** `expectError` for a promise: asserts it rejects with an instance of `type` whose `code` is `code`, and returns it. */
export async function expectRejection<E extends Error & { code: string }>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => E,
  code: string,
): Promise<E> {
  let caught: unknown;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  expect(caught, "expected a rejection").to.be.instanceOf(type);
  expect((caught as E).code).to.equal(code, (caught as E).message);
  return caught as E;
}
