/**
 * X3DH key agreement, as Signal specifies it (https://signal.org/docs/specifications/x3dh/, revision 1,
 * 2016-11-04; "§" below refers to its sections), with curve X25519, hash SHA-256 and
 * info "SendingNetwork_X3DH_v1" (§2.1).
 *
 * One deliberate difference, §2.2 "Sig": the specification signs with XEdDSA under the X25519 identity key itself.
 * XEdDSA is not in @noble, and writing it here would be home-made crypto below the protocol level, so an identity
 * is a pair of independent keys: an X25519 key `dh` used in DH1/DH2 exactly as IK in the specification, and an
 * Ed25519 key `signing` (RFC 8032, verified strictly) that signs the signed prekey. Two keys cost 32 bytes more per
 * bundle and header; in exchange each key has one use and no conversion between curve forms is needed. To bind the
 * two halves together:
 *   - the signed-prekey signature covers Encode(IK_dh), not only Encode(SPK), so a server cannot pair B's signing key
 *     with another DH key;
 *   - AD = Encode(IK_A) || Encode(IK_B) || IKsig_A || IKsig_B (130 bytes), so the first AEAD-checked message fails if
 *     anyone swapped either party's signing key (no unknown-key-share across identities).
 *
 * Encode(PK) (§2.1) is 0x05 || the 32-byte little-endian u-coordinate (libsignal's type byte for Curve25519).
 *
 * The one-time prekey (§3.2) is optional. The responder does not delete it here: `x3dhRespond` returns its id, and
 * the caller deletes it once the initial ciphertext has decrypted (§3.4), so a forged header cannot burn a prekey a
 * genuine initiator used; `acceptSession` in ./session does exactly that.
 */
import { ByteReader, bytesEqual, concatBytes, expectBytes, expectU32, u32Bytes, wipe } from "./bytes";
import {
  KEY_LENGTH,
  SIGNATURE_LENGTH,
  X3DH_INFO,
  defaultRandomBytes,
  dh,
  ed25519PublicKey,
  generateEd25519KeyPair,
  generateX25519KeyPair,
  sign,
  verify,
  x25519PublicKey,
  x3dhKdf,
  type KeyPair,
  type RandomBytes,
} from "./primitives";

/** What went wrong in X3DH. */
export type X3dhErrorCode =
  /** The signed prekey's signature does not verify under the identity's signing key. */
  | "BadSignature"
  /** A key or signature has the wrong length. */
  | "BadKeyLength"
  /** A public key is not usable for X25519 (a low-order point). */
  | "InvalidKey"
  /** The responder has no signed prekey or one-time prekey with the id the header names. */
  | "MissingPrekey"
  /** An encoded header or bundle does not parse. */
  | "Malformed"
  /** An initial message without a one-time prekey whose base key (EK_A) this responder already accepted (§4.2). */
  | "Replayed";

/** The typed error of this module; `code` says which check failed. */
export class X3dhError extends Error {
  /**
   * @param code which check failed
   * @param message names the function and what it expected
   */
  constructor(
    readonly code: X3dhErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "X3dhError";
  }
}

/** The protocol name this X3DH instance binds into its KDF (HKDF info, §2.1). */
export const X3DH_PROTOCOL = X3DH_INFO;
/** Type byte of Encode(PK) for an X25519 key (§2.1). */
export const CURVE25519_KEY_TYPE = 0x05;
/** Length of Encode(PK). */
export const ENCODED_KEY_LENGTH = 33;
/** Length of AD = Encode(IK_A) || Encode(IK_B) || IKsig_A || IKsig_B. */
export const X3DH_AD_LENGTH = 2 * ENCODED_KEY_LENGTH + 2 * KEY_LENGTH;
/** Version byte of an encoded initial-message header; a new layout takes a new version. */
export const X3DH_HEADER_VERSION = 1;
/** Length of an encoded initial-message header (`encodeX3dhHeader`). */
export const X3DH_HEADER_LENGTH = 1 + 3 * KEY_LENGTH + 4 + 1 + 4;

/** Domain separation of signed-prekey signatures from anything else the signing key may sign. */
const SIGNED_PREKEY_DOMAIN = new TextEncoder().encode("SendingNetwork_X3DH_v1/signed-prekey");

/** A user's (or device's) long-term identity: an X25519 key for DH and an Ed25519 key that signs prekeys. */
export interface IdentityKeyPair {
  /** IK in the specification: used in DH1 (initiator) and DH2 (responder). */
  readonly dh: KeyPair;
  /** Signs the signed prekey (replaces XEdDSA, see the module comment). */
  readonly signing: KeyPair;
}

/** The public half of an identity, as published in the DID document and carried in the initial header. */
export interface IdentityPublicKey {
  /** 32-byte X25519 public key. */
  readonly dh: Uint8Array;
  /** 32-byte Ed25519 public key. */
  readonly signing: Uint8Array;
}

/** A signed prekey with its secret (kept by the responder until rotated). */
export interface SignedPrekey {
  /** Identifier the initiator echoes in its header (uint32). */
  readonly id: number;
  /** The X25519 key pair SPK. */
  readonly keyPair: KeyPair;
  /** Ed25519 signature by the identity's signing key over `signedPrekeyMessage`. */
  readonly signature: Uint8Array;
}

/** A one-time prekey with its secret (kept by the responder until used once). */
export interface OneTimePrekey {
  /** Identifier the initiator echoes in its header (uint32). */
  readonly id: number;
  /** The X25519 key pair OPK. */
  readonly keyPair: KeyPair;
}

/** What a home node serves for one responder (§3.2): the public parts only. */
export interface PrekeyBundle {
  /** The responder's identity IK_B. */
  readonly identity: IdentityPublicKey;
  /** The signed prekey SPK_B, its id and its signature. */
  readonly signedPrekey: { readonly id: number; readonly publicKey: Uint8Array; readonly signature: Uint8Array };
  /** One one-time prekey OPK_B, when the server still has one. */
  readonly oneTimePrekey?: { readonly id: number; readonly publicKey: Uint8Array };
}

/** The X3DH part of the initial message (§3.3): who the initiator is, its ephemeral key, which prekeys it used. */
export interface X3dhHeader {
  /** IK_A. */
  readonly identity: IdentityPublicKey;
  /** EK_A (32-byte X25519 public key). */
  readonly ephemeralKey: Uint8Array;
  /** Id of the responder's signed prekey used. */
  readonly signedPrekeyId: number;
  /** Id of the responder's one-time prekey used, if any. */
  readonly oneTimePrekeyId?: number;
}

/** The initiator's result (§3.3). */
export interface X3dhInitiatorResult {
  /** SK: 32 bytes, the Double Ratchet's initial root key (Double Ratchet §5.1). */
  readonly sharedSecret: Uint8Array;
  /** AD: Encode(IK_A) || Encode(IK_B) || IKsig_A || IKsig_B. */
  readonly associatedData: Uint8Array;
  /** What the initial message carries beside the first ciphertext. */
  readonly header: X3dhHeader;
  /** SPK_B: the responder's initial ratchet public key (Double Ratchet §5.1). */
  readonly remoteRatchetKey: Uint8Array;
}

/** The responder's result (§3.4). */
export interface X3dhResponderResult {
  /** SK, equal to the initiator's. */
  readonly sharedSecret: Uint8Array;
  /** AD, equal to the initiator's. */
  readonly associatedData: Uint8Array;
  /** SPK_B's key pair: the responder's initial ratchet key pair (Double Ratchet §5.1). */
  readonly ratchetKeyPair: KeyPair;
  /** The one-time prekey used: the caller deletes it once the initial ciphertext decrypts. */
  readonly oneTimePrekeyId?: number;
}

/** How the responder finds its prekey secrets by id. */
export interface PrekeyLookup {
  /** The signed prekey with this id, if still held. */
  signedPrekey(id: number): SignedPrekey | undefined;
  /** The one-time prekey with this id, if not yet used. */
  oneTimePrekey(id: number): OneTimePrekey | undefined;
}

const fail = (code: X3dhErrorCode) => (message: string) => new X3dhError(code, message);

function checkKey(value: unknown, where: string, what: string): Uint8Array {
  return expectBytes(value, KEY_LENGTH, where, what, fail("BadKeyLength"));
}

function checkId(value: unknown, where: string, what: string): number {
  return expectU32(value, where, what, fail("Malformed"));
}

function checkKeyPair(pair: KeyPair, where: string, what: string): void {
  checkKey(pair?.secretKey, where, `${what} secret key`);
  checkKey(pair?.publicKey, where, `${what} public key`);
}

/** Encode(PK) (§2.1): 0x05 || u-coordinate. */
export function encodeX25519PublicKey(publicKey: Uint8Array): Uint8Array {
  checkKey(publicKey, "encodeX25519PublicKey", "X25519 public key");
  const out = new Uint8Array(ENCODED_KEY_LENGTH);
  out[0] = CURVE25519_KEY_TYPE;
  out.set(publicKey, 1);
  return out;
}

/** A fresh identity: independent X25519 and Ed25519 key pairs. */
export function generateIdentityKeyPair(random: RandomBytes = defaultRandomBytes): IdentityKeyPair {
  return { dh: generateX25519KeyPair(random), signing: generateEd25519KeyPair(random) };
}

/** The identity from its two 32-byte secret keys (public keys derived): for restoring a stored identity. */
export function identityKeyPairFromSecrets(dhSecretKey: Uint8Array, signingSecretKey: Uint8Array): IdentityKeyPair {
  checkKey(dhSecretKey, "identityKeyPairFromSecrets", "X25519 secret key");
  checkKey(signingSecretKey, "identityKeyPairFromSecrets", "Ed25519 secret key");
  return {
    dh: { secretKey: dhSecretKey.slice(), publicKey: x25519PublicKey(dhSecretKey) },
    signing: { secretKey: signingSecretKey.slice(), publicKey: ed25519PublicKey(signingSecretKey) },
  };
}

/** The public half of an identity. */
export function identityPublicKey(identity: IdentityKeyPair): IdentityPublicKey {
  return { dh: identity.dh.publicKey.slice(), signing: identity.signing.publicKey.slice() };
}

/**
 * What the signing key signs for a signed prekey: "SendingNetwork_X3DH_v1/signed-prekey" || Encode(IK_dh) ||
 * uint32be(id) || Encode(SPK).
 */
export function signedPrekeyMessage(identityDhKey: Uint8Array, id: number, prekey: Uint8Array): Uint8Array {
  return concatBytes(
    SIGNED_PREKEY_DOMAIN,
    encodeX25519PublicKey(identityDhKey),
    u32Bytes(checkId(id, "signedPrekeyMessage", "signed prekey id")),
    encodeX25519PublicKey(prekey),
  );
}

/** A fresh signed prekey with id `id`, signed by `identity` (§3.2). */
export function generateSignedPrekey(
  identity: IdentityKeyPair,
  id: number,
  random: RandomBytes = defaultRandomBytes,
): SignedPrekey {
  checkKeyPair(identity?.dh, "generateSignedPrekey", "identity X25519");
  checkKeyPair(identity?.signing, "generateSignedPrekey", "identity Ed25519");
  checkId(id, "generateSignedPrekey", "signed prekey id");
  const keyPair = generateX25519KeyPair(random);
  const signature = sign(identity.signing.secretKey, signedPrekeyMessage(identity.dh.publicKey, id, keyPair.publicKey));
  return { id, keyPair, signature };
}

/** `count` fresh one-time prekeys with ids firstId, firstId + 1, ... (§3.2). */
export function generateOneTimePrekeys(
  firstId: number,
  count: number,
  random: RandomBytes = defaultRandomBytes,
): OneTimePrekey[] {
  checkId(firstId, "generateOneTimePrekeys", "first id");
  if (!Number.isInteger(count) || count < 0 || firstId + count - 1 > 0xffff_ffff) {
    throw new X3dhError("Malformed", `generateOneTimePrekeys: expected a count keeping ids below 2^32, got ${count}`);
  }
  return Array.from({ length: count }, (_, i) => ({ id: firstId + i, keyPair: generateX25519KeyPair(random) }));
}

/** The bundle a home node serves for `identity` (public parts only). */
export function prekeyBundle(
  identity: IdentityKeyPair,
  signedPrekey: SignedPrekey,
  oneTimePrekey?: OneTimePrekey,
): PrekeyBundle {
  return {
    identity: identityPublicKey(identity),
    signedPrekey: {
      id: signedPrekey.id,
      publicKey: signedPrekey.keyPair.publicKey.slice(),
      signature: signedPrekey.signature.slice(),
    },
    ...(oneTimePrekey
      ? { oneTimePrekey: { id: oneTimePrekey.id, publicKey: oneTimePrekey.keyPair.publicKey.slice() } }
      : {}),
  };
}

/**
 * Checks a bundle's shape and its signed-prekey signature (§3.3: "Alice verifies the prekey signature and aborts
 * the protocol if verification fails"). Throws X3dhError ("BadKeyLength", "Malformed" or "BadSignature").
 */
export function verifyPrekeyBundle(bundle: PrekeyBundle): void {
  const where = "verifyPrekeyBundle";
  checkKey(bundle?.identity?.dh, where, "identity X25519 key");
  checkKey(bundle.identity.signing, where, "identity Ed25519 key");
  checkKey(bundle.signedPrekey?.publicKey, where, "signed prekey");
  checkId(bundle.signedPrekey.id, where, "signed prekey id");
  expectBytes(bundle.signedPrekey.signature, SIGNATURE_LENGTH, where, "signed prekey signature", fail("BadKeyLength"));
  if (bundle.oneTimePrekey !== undefined) {
    checkKey(bundle.oneTimePrekey.publicKey, where, "one-time prekey");
    checkId(bundle.oneTimePrekey.id, where, "one-time prekey id");
  }
  const message = signedPrekeyMessage(bundle.identity.dh, bundle.signedPrekey.id, bundle.signedPrekey.publicKey);
  if (!verify(bundle.identity.signing, message, bundle.signedPrekey.signature)) {
    throw new X3dhError(
      "BadSignature",
      `${where}: expected a valid Ed25519 signature of signed prekey ${bundle.signedPrekey.id}`,
    );
  }
}

/** AD = Encode(IK_A) || Encode(IK_B) || IKsig_A || IKsig_B (§3.3 plus the signing keys, see module comment). */
export function x3dhAssociatedData(initiator: IdentityPublicKey, responder: IdentityPublicKey): Uint8Array {
  return concatBytes(
    encodeX25519PublicKey(initiator.dh),
    encodeX25519PublicKey(responder.dh),
    checkKey(initiator.signing, "x3dhAssociatedData", "initiator Ed25519 key"),
    checkKey(responder.signing, "x3dhAssociatedData", "responder Ed25519 key"),
  );
}

function dhChecked(secretKey: Uint8Array, publicKey: Uint8Array, where: string, what: string): Uint8Array {
  try {
    return dh(secretKey, publicKey);
  } catch (e) {
    throw new X3dhError(
      "InvalidKey",
      `${where}: expected ${what} to be a valid X25519 public key (${(e as Error).message})`,
    );
  }
}

/**
 * The initiator's side (§3.3): verifies the bundle, draws EK_A, computes
 *   DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B) (when present),
 *   SK = KDF(DH1 || DH2 || DH3 [|| DH4]),
 * and erases EK_A's secret and the DH outputs. Throws X3dhError.
 */
export function x3dhInitiate(
  identity: IdentityKeyPair,
  bundle: PrekeyBundle,
  random: RandomBytes = defaultRandomBytes,
): X3dhInitiatorResult {
  const where = "x3dhInitiate";
  checkKeyPair(identity?.dh, where, "identity X25519");
  checkKey(identity?.signing?.publicKey, where, "identity Ed25519 public key");
  verifyPrekeyBundle(bundle);
  const ephemeral = generateX25519KeyPair(random);
  const parts: Uint8Array[] = [];
  try {
    parts.push(dhChecked(identity.dh.secretKey, bundle.signedPrekey.publicKey, where, "the signed prekey"));
    parts.push(dhChecked(ephemeral.secretKey, bundle.identity.dh, where, "the responder identity key"));
    parts.push(dhChecked(ephemeral.secretKey, bundle.signedPrekey.publicKey, where, "the signed prekey"));
    if (bundle.oneTimePrekey) {
      parts.push(dhChecked(ephemeral.secretKey, bundle.oneTimePrekey.publicKey, where, "the one-time prekey"));
    }
    const keyMaterial = concatBytes(...parts);
    const sharedSecret = x3dhKdf(keyMaterial);
    wipe(keyMaterial);
    const initiator = identityPublicKey(identity);
    return {
      sharedSecret,
      associatedData: x3dhAssociatedData(initiator, bundle.identity),
      header: {
        identity: initiator,
        ephemeralKey: ephemeral.publicKey,
        signedPrekeyId: bundle.signedPrekey.id,
        ...(bundle.oneTimePrekey ? { oneTimePrekeyId: bundle.oneTimePrekey.id } : {}),
      },
      remoteRatchetKey: bundle.signedPrekey.publicKey.slice(),
    };
  } finally {
    wipe(ephemeral.secretKey, ...parts);
  }
}

/**
 * The responder's side (§3.4): looks up the prekeys the header names, computes
 *   DH1 = DH(SPK_B, IK_A), DH2 = DH(IK_B, EK_A), DH3 = DH(SPK_B, EK_A), DH4 = DH(OPK_B, EK_A) (when named),
 * and the same SK and AD as the initiator. Deletes nothing: the caller deletes `oneTimePrekeyId` after the initial
 * ciphertext decrypts (§3.4). Throws X3dhError ("MissingPrekey" when a named prekey is not held, e.g. a one-time
 * prekey already used by a replayed initial message).
 */
export function x3dhRespond(identity: IdentityKeyPair, prekeys: PrekeyLookup, header: X3dhHeader): X3dhResponderResult {
  const where = "x3dhRespond";
  checkKeyPair(identity?.dh, where, "identity X25519");
  checkKey(identity?.signing?.publicKey, where, "identity Ed25519 public key");
  checkKey(header?.identity?.dh, where, "initiator identity X25519 key");
  checkKey(header.identity.signing, where, "initiator identity Ed25519 key");
  checkKey(header.ephemeralKey, where, "ephemeral key");
  checkId(header.signedPrekeyId, where, "signed prekey id");
  const spk = prekeys.signedPrekey(header.signedPrekeyId);
  if (spk === undefined) {
    throw new X3dhError("MissingPrekey", `${where}: expected a held signed prekey with id ${header.signedPrekeyId}`);
  }
  checkKeyPair(spk.keyPair, where, "signed prekey");
  let opk: OneTimePrekey | undefined;
  if (header.oneTimePrekeyId !== undefined) {
    checkId(header.oneTimePrekeyId, where, "one-time prekey id");
    opk = prekeys.oneTimePrekey(header.oneTimePrekeyId);
    if (opk === undefined) {
      throw new X3dhError(
        "MissingPrekey",
        `${where}: expected an unused one-time prekey with id ${header.oneTimePrekeyId}`,
      );
    }
    checkKeyPair(opk.keyPair, where, "one-time prekey");
  }
  const parts: Uint8Array[] = [];
  try {
    parts.push(dhChecked(spk.keyPair.secretKey, header.identity.dh, where, "the initiator identity key"));
    parts.push(dhChecked(identity.dh.secretKey, header.ephemeralKey, where, "the ephemeral key"));
    parts.push(dhChecked(spk.keyPair.secretKey, header.ephemeralKey, where, "the ephemeral key"));
    if (opk) parts.push(dhChecked(opk.keyPair.secretKey, header.ephemeralKey, where, "the ephemeral key"));
    const keyMaterial = concatBytes(...parts);
    const sharedSecret = x3dhKdf(keyMaterial);
    wipe(keyMaterial);
    return {
      sharedSecret,
      associatedData: x3dhAssociatedData(header.identity, identityPublicKey(identity)),
      ratchetKeyPair: { secretKey: spk.keyPair.secretKey.slice(), publicKey: spk.keyPair.publicKey.slice() },
      ...(opk ? { oneTimePrekeyId: opk.id } : {}),
    };
  } finally {
    wipe(...parts);
  }
}

/**
 * The fixed-size wire form of an initial-message header, 106 bytes:
 *
 *   offset size  field
 *        0    1  version, 0x01
 *        1   32  IK_A X25519 key
 *       33   32  IK_A Ed25519 key
 *       65   32  EK_A
 *       97    4  signed prekey id, big-endian
 *      101    1  0x01 if a one-time prekey was used, else 0x00
 *      102    4  one-time prekey id, big-endian (0 when unused)
 */
export function encodeX3dhHeader(header: X3dhHeader): Uint8Array {
  const where = "encodeX3dhHeader";
  const out = concatBytes(
    Uint8Array.of(X3DH_HEADER_VERSION),
    checkKey(header?.identity?.dh, where, "initiator identity X25519 key"),
    checkKey(header.identity.signing, where, "initiator identity Ed25519 key"),
    checkKey(header.ephemeralKey, where, "ephemeral key"),
    u32Bytes(checkId(header.signedPrekeyId, where, "signed prekey id")),
    Uint8Array.of(header.oneTimePrekeyId === undefined ? 0 : 1),
    u32Bytes(header.oneTimePrekeyId === undefined ? 0 : checkId(header.oneTimePrekeyId, where, "one-time prekey id")),
  );
  return out;
}

/** Parses `encodeX3dhHeader`'s form strictly (exact length, known version, flag 0 or 1, id 0 when unused). */
export function decodeX3dhHeader(bytes: Uint8Array): X3dhHeader {
  const where = "decodeX3dhHeader";
  expectBytes(bytes, X3DH_HEADER_LENGTH, where, "X3DH header", fail("Malformed"));
  const r = new ByteReader(bytes, where, fail("Malformed"));
  const version = r.u8("version");
  if (version !== X3DH_HEADER_VERSION) {
    throw new X3dhError("Malformed", `${where}: expected version ${X3DH_HEADER_VERSION}, got ${version}`);
  }
  const dhKey = r.bytes(KEY_LENGTH, "identity X25519 key");
  const signing = r.bytes(KEY_LENGTH, "identity Ed25519 key");
  const ephemeralKey = r.bytes(KEY_LENGTH, "ephemeral key");
  const signedPrekeyId = r.u32("signed prekey id");
  const flag = r.u8("one-time prekey flag");
  const oneTimePrekeyId = r.u32("one-time prekey id");
  r.end();
  if (flag > 1 || (flag === 0 && oneTimePrekeyId !== 0)) {
    throw new X3dhError(
      "Malformed",
      `${where}: expected flag 0 with id 0 or flag 1, got flag ${flag} id ${oneTimePrekeyId}`,
    );
  }
  // X25519 ignores bit 255 and reduces u mod p (RFC 7748), so a key had two or more encodings: a header with another
  // encoding of the same EK_A would open the same session under a base key that compares as new (a replay).
  for (const [key, what] of [
    [dhKey, "identity X25519 key"],
    [ephemeralKey, "ephemeral key"],
  ] as const) {
    if (!isCanonicalX25519(key)) throw new X3dhError("Malformed", `${where}: expected a canonical ${what} (u < p)`);
  }
  return {
    identity: { dh: dhKey, signing },
    ephemeralKey,
    signedPrekeyId,
    ...(flag === 1 ? { oneTimePrekeyId } : {}),
  };
}

/** Whether a 32-byte X25519 u-coordinate is in canonical form: little-endian, below p = 2^255 - 19 (bit 255 clear). */
function isCanonicalX25519(u: Uint8Array): boolean {
  if (u[31] < 0x7f) return true;
  if (u[31] > 0x7f) return false;
  for (let i = 30; i >= 1; i--) if (u[i] !== 0xff) return true;
  return u[0] < 0xed;
}

/** Whether two identity public keys are the same identity (both halves equal). */
export function sameIdentity(a: IdentityPublicKey, b: IdentityPublicKey): boolean {
  return bytesEqual(a.dh, b.dh) && bytesEqual(a.signing, b.signing);
}
