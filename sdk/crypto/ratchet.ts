/**
 * The Double Ratchet, as Signal specifies it (https://signal.org/docs/specifications/doubleratchet/, revision 1,
 * 2016-11-20; "§" below refers to its sections), without header encryption (§4).
 *
 *   GENERATE_DH / DH   X25519 (§5.2)
 *   KDF_RK             HKDF-SHA-256, salt = rk, IKM = dh_out, info "SendingNetwork_DoubleRatchet_v1", 64 bytes (§5.2)
 *   KDF_CK             HMAC-SHA-256(ck, 0x01) = mk, HMAC-SHA-256(ck, 0x02) = next ck (§5.2)
 *   ENCRYPT            ChaCha20-Poly1305 under mk with a random 12-byte nonce sent in the message (§3.1 allows a
 *                      random, transmitted nonce): if a stale persisted state is ever restored and mk reused, the
 *                      nonces still differ, where a fixed or mk-derived nonce would repeat keystream
 *   HEADER / CONCAT    fixed 41 bytes, so AD || header parses uniquely without a length prefix (§3.1)
 *
 * Wire form of a message (`RATCHET_MESSAGE_OVERHEAD` = 69 bytes plus the plaintext length):
 *
 *   offset size  field
 *        0    1  version, 0x01                    ┐
 *        1   32  DH ratchet public key            │ header, authenticated as AD || header
 *       33    4  PN, big-endian                   │
 *       37    4  N, big-endian                    ┘
 *       41   12  nonce
 *       53    …  ciphertext || 16-byte Poly1305 tag
 *
 * Decryption is transactional (§3.5: "changes to the state object are discarded" on failure): every key it derives
 * stays in locals until the AEAD tag verifies, so a forged or tampered message leaves the session exactly as it was.
 * What is erased when (§6.1, §6.4): each chain step overwrites the previous chain key and the message key after use;
 * a DH ratchet step overwrites the previous root key, ratchet secret key and both chain keys; a skipped message key is
 * overwritten when its message decrypts or when it is evicted (oldest first) beyond MAX_SKIPPED_KEYS. Serialized
 * snapshots are copies: a stored snapshot keeps what the live session erased, so storage must replace, not append.
 */
import { ByteReader, ByteWriter, MAX_U32, bytesEqual, expectBytes, readU32, toHex, wipe, writeU32 } from "./bytes";
import {
  KEY_LENGTH,
  NONCE_LENGTH,
  TAG_LENGTH,
  aeadOpen,
  aeadSeal,
  defaultRandomBytes,
  dh,
  generateX25519KeyPair,
  kdfCk,
  kdfRk,
  randomNonce,
  x25519PublicKey,
  type KeyPair,
  type RandomBytes,
} from "./primitives";

/** The most message keys one chain may skip in one step: bounds the HMAC work and memory a forged header can cost. */
export const MAX_SKIP = 1000;
/** The most skipped message keys kept across all chains; beyond it the oldest are evicted and erased (§6.4). */
export const MAX_SKIPPED_KEYS = 2 * MAX_SKIP;
/** Finished receiving chains remembered (public key and length) to report replays there as Duplicate, not Tampered. */
export const MAX_PREVIOUS_CHAINS = 32;
/** Longest associated data a session takes (the X3DH AD is 130 bytes); bounds the serialized state. */
export const MAX_ASSOCIATED_DATA_LENGTH = 1024;
/** Version byte of a ratchet message; a new layout takes a new version. */
export const RATCHET_MESSAGE_VERSION = 1;
/** Length of the header: version, DH public key, PN, N. */
export const RATCHET_HEADER_LENGTH = 1 + KEY_LENGTH + 4 + 4;
/** Bytes a message adds to its plaintext: header, nonce, tag. */
export const RATCHET_MESSAGE_OVERHEAD = RATCHET_HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH;
/** Version byte of the serialized state. */
export const RATCHET_STATE_VERSION = 1;

/** Which check a RatchetError failed. */
export type RatchetErrorCode = "TooManySkipped" | "Duplicate" | "Tampered" | "Malformed" | "InvalidState";

/** Base of the ratchet's typed errors; `code` names the failed check. The session is unchanged when one is thrown. */
export class RatchetError extends Error {
  /**
   * @param code the failed check
   * @param message names the function and what it expected
   */
  constructor(
    readonly code: RatchetErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "RatchetError";
  }
}

/** A header asks to skip more than MAX_SKIP message keys in one chain. */
export class TooManySkippedError extends RatchetError {
  /** @param message names the function and the gap */
  constructor(message: string) {
    super("TooManySkipped", message);
    this.name = "TooManySkippedError";
  }
}

/** The message was already decrypted (or its key erased): a message key is used once. */
export class DuplicateMessageError extends RatchetError {
  /** @param message names the function and the message's position */
  constructor(message: string) {
    super("Duplicate", message);
    this.name = "DuplicateMessageError";
  }
}

/** The AEAD tag does not verify: ciphertext, nonce or header was altered, or the message is not for this session. */
export class TamperedMessageError extends RatchetError {
  /** @param message names the function */
  constructor(message: string) {
    super("Tampered", message);
    this.name = "TamperedMessageError";
  }
}

/** Bytes that do not parse as a message or a serialized state. */
export class MalformedRatchetDataError extends RatchetError {
  /** @param message names the function and what it expected */
  constructor(message: string) {
    super("Malformed", message);
    this.name = "MalformedRatchetDataError";
  }
}

/** The call is not possible in the session's state (e.g. the responder sending before it has received). */
export class RatchetStateError extends RatchetError {
  /** @param message names the function and the state */
  constructor(message: string) {
    super("InvalidState", message);
    this.name = "RatchetStateError";
  }
}

/** A parsed message header. */
export interface RatchetHeader {
  /** The sender's current ratchet public key. */
  readonly dh: Uint8Array;
  /** Length of the sender's previous sending chain. */
  readonly pn: number;
  /** Index of this message in the sender's current sending chain. */
  readonly n: number;
}

/** What the initiator (Alice) starts from (§3.3 RatchetInitAlice, §5.1). */
export interface RatchetInitiatorInit {
  /** SK from X3DH (32 bytes). */
  readonly sharedSecret: Uint8Array;
  /** AD from X3DH: authenticated with every message. */
  readonly associatedData: Uint8Array;
  /** The responder's signed prekey, its initial ratchet public key. */
  readonly remoteRatchetKey: Uint8Array;
}

/** What the responder (Bob) starts from (§3.3 RatchetInitBob, §5.1). */
export interface RatchetResponderInit {
  /** SK from X3DH (32 bytes). */
  readonly sharedSecret: Uint8Array;
  /** AD from X3DH. */
  readonly associatedData: Uint8Array;
  /** The signed prekey's key pair, its initial ratchet key pair. */
  readonly ratchetKeyPair: KeyPair;
}

/** Runtime options (not serialized). */
export interface RatchetOptions {
  /** Randomness for ratchet key pairs and nonces; the platform CSPRNG by default. Tests pin it for vectors. */
  readonly randomBytes?: RandomBytes;
}

interface SkippedKey {
  readonly dh: Uint8Array;
  readonly n: number;
  readonly messageKey: Uint8Array;
}

interface PreviousChain {
  readonly dh: Uint8Array;
  readonly length: number;
}

const STATE_MAGIC = Uint8Array.of(0x53, 0x4e, 0x44, 0x52); // "SNDR"
const FLAG_DHR = 1;
const FLAG_CKS = 2;
const FLAG_CKR = 4;

const skippedId = (dhKey: Uint8Array, n: number): string => `${toHex(dhKey)}:${n}`;
const malformed = (message: string) => new MalformedRatchetDataError(message);

/** Parses the 41-byte header at the start of a message (strict: version and length). */
export function decodeRatchetHeader(message: Uint8Array): RatchetHeader {
  expectBytes(message, undefined, "decodeRatchetHeader", "message", malformed);
  if (message.length < RATCHET_HEADER_LENGTH) {
    throw malformed(`decodeRatchetHeader: expected at least ${RATCHET_HEADER_LENGTH} bytes, got ${message.length}`);
  }
  if (message[0] !== RATCHET_MESSAGE_VERSION) {
    throw malformed(`decodeRatchetHeader: expected version ${RATCHET_MESSAGE_VERSION}, got ${message[0]}`);
  }
  return { dh: message.slice(1, 1 + KEY_LENGTH), pn: readU32(message, 33), n: readU32(message, 37) };
}

/** Derives `count` message keys from `chainKey` onward; returns them and the chain key after them (input not wiped). */
function deriveKeys(chainKey: Uint8Array, count: number): { keys: Uint8Array[]; chainKey: Uint8Array } {
  const keys: Uint8Array[] = [];
  let ck = chainKey;
  for (let i = 0; i < count; i++) {
    const next = kdfCk(ck);
    if (ck !== chainKey) wipe(ck);
    keys.push(next.messageKey);
    ck = next.chainKey;
  }
  return { keys, chainKey: ck === chainKey ? chainKey.slice() : ck };
}

/**
 * One side of a pairwise Double Ratchet session. Create it with `initiator` / `responder` right after X3DH, or
 * restore it with `deserialize`; then `encrypt` and `decrypt`. Not safe for concurrent use (no method is async).
 */
export class RatchetSession {
  #rootKey: Uint8Array;
  #dhs: KeyPair;
  #dhr: Uint8Array | undefined;
  #cks: Uint8Array | undefined;
  #ckr: Uint8Array | undefined;
  #ns: number;
  #nr: number;
  #pn: number;
  readonly #ad: Uint8Array;
  /** Scratch buffer AD || header, reused by every call (both are synchronous). */
  readonly #adHeader: Uint8Array;
  readonly #skipped = new Map<string, SkippedKey>();
  #previous: PreviousChain[] = [];
  readonly #random: RandomBytes;
  /** The injected random source, if any: nonces then come from it too, so tests can pin whole transcripts. */
  readonly #injectedRandom: RandomBytes | undefined;

  private constructor(
    rootKey: Uint8Array,
    dhs: KeyPair,
    associatedData: Uint8Array,
    random: RandomBytes | undefined,
    fields: { dhr?: Uint8Array; cks?: Uint8Array; ckr?: Uint8Array; ns?: number; nr?: number; pn?: number } = {},
  ) {
    this.#rootKey = rootKey;
    this.#dhs = dhs;
    this.#dhr = fields.dhr;
    this.#cks = fields.cks;
    this.#ckr = fields.ckr;
    this.#ns = fields.ns ?? 0;
    this.#nr = fields.nr ?? 0;
    this.#pn = fields.pn ?? 0;
    this.#ad = associatedData.slice();
    this.#adHeader = new Uint8Array(associatedData.length + RATCHET_HEADER_LENGTH);
    this.#adHeader.set(associatedData);
    this.#random = random ?? defaultRandomBytes;
    this.#injectedRandom = random;
  }

  /** RatchetInitAlice (§3.3): a fresh ratchet key pair, and the first sending chain from DH(it, SPK_B). */
  static initiator(init: RatchetInitiatorInit, options: RatchetOptions = {}): RatchetSession {
    const where = "RatchetSession.initiator";
    expectBytes(init?.sharedSecret, KEY_LENGTH, where, "shared secret", malformed);
    expectBytes(init.remoteRatchetKey, KEY_LENGTH, where, "remote ratchet key", malformed);
    checkAssociatedData(init.associatedData, where);
    const random = options.randomBytes;
    const dhs = generateX25519KeyPair(random);
    const dhOut = dhOrMalformed(dhs.secretKey, init.remoteRatchetKey, where);
    const { rootKey, chainKey } = kdfRk(init.sharedSecret, dhOut);
    wipe(dhOut);
    return new RatchetSession(rootKey, dhs, init.associatedData, random, {
      dhr: init.remoteRatchetKey.slice(),
      cks: chainKey,
    });
  }

  /** RatchetInitBob (§3.3): root key SK, ratchet key pair SPK_B, no chains until the first message arrives. */
  static responder(init: RatchetResponderInit, options: RatchetOptions = {}): RatchetSession {
    const where = "RatchetSession.responder";
    expectBytes(init?.sharedSecret, KEY_LENGTH, where, "shared secret", malformed);
    expectBytes(init.ratchetKeyPair?.secretKey, KEY_LENGTH, where, "ratchet secret key", malformed);
    expectBytes(init.ratchetKeyPair.publicKey, KEY_LENGTH, where, "ratchet public key", malformed);
    checkAssociatedData(init.associatedData, where);
    const pair = { secretKey: init.ratchetKeyPair.secretKey.slice(), publicKey: init.ratchetKeyPair.publicKey.slice() };
    return new RatchetSession(init.sharedSecret.slice(), pair, init.associatedData, options.randomBytes);
  }

  /** Whether this side can send (the responder cannot until it has received the initiator's first message). */
  get canSend(): boolean {
    return this.#cks !== undefined;
  }

  /** Skipped message keys currently stored (bounded by MAX_SKIPPED_KEYS). */
  get skippedKeyCount(): number {
    return this.#skipped.size;
  }

  /** The associated data every message of this session authenticates (a copy). */
  get associatedData(): Uint8Array {
    return this.#ad.slice();
  }

  /** RatchetEncrypt (§3.4): one chain step, then header || nonce || AEAD(mk, plaintext, AD || header). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    const where = "RatchetSession.encrypt";
    expectBytes(plaintext, undefined, where, "plaintext", malformed);
    if (this.#cks === undefined) {
      throw new RatchetStateError(`${where}: expected a sending chain; the responder sends after its first decrypt`);
    }
    if (this.#ns === MAX_U32)
      throw new RatchetStateError(`${where}: expected N below 2^32 - 1, the chain is exhausted`);
    const nonce = randomNonce(NONCE_LENGTH, this.#injectedRandom);
    const { messageKey, chainKey } = kdfCk(this.#cks);
    wipe(this.#cks);
    this.#cks = chainKey;
    const out = new Uint8Array(RATCHET_MESSAGE_OVERHEAD + plaintext.length);
    out[0] = RATCHET_MESSAGE_VERSION;
    out.set(this.#dhs.publicKey, 1);
    writeU32(out, 33, this.#pn);
    writeU32(out, 37, this.#ns);
    out.set(nonce, RATCHET_HEADER_LENGTH);
    this.#adHeader.set(out.subarray(0, RATCHET_HEADER_LENGTH), this.#ad.length);
    aeadSeal(
      messageKey,
      out.subarray(RATCHET_HEADER_LENGTH, RATCHET_HEADER_LENGTH + NONCE_LENGTH),
      this.#adHeader,
      plaintext,
      out.subarray(RATCHET_HEADER_LENGTH + NONCE_LENGTH),
    );
    wipe(messageKey);
    this.#ns++;
    return out;
  }

  /**
   * RatchetDecrypt (§3.5): a stored skipped key, else the current receiving chain, else a DH ratchet step; skipped
   * keys on the way are stored. Throws TooManySkippedError, DuplicateMessageError, TamperedMessageError or
   * MalformedRatchetDataError, and then leaves the session unchanged.
   */
  decrypt(message: Uint8Array): Uint8Array {
    const where = "RatchetSession.decrypt";
    expectBytes(message, undefined, where, "message", malformed);
    if (message.length < RATCHET_MESSAGE_OVERHEAD) {
      throw malformed(`${where}: expected at least ${RATCHET_MESSAGE_OVERHEAD} bytes, got ${message.length}`);
    }
    if (message[0] !== RATCHET_MESSAGE_VERSION) {
      throw malformed(`${where}: expected version ${RATCHET_MESSAGE_VERSION}, got ${message[0]}`);
    }
    const dhKey = message.subarray(1, 1 + KEY_LENGTH);
    const pn = readU32(message, 33);
    const n = readU32(message, 37);
    const nonce = message.subarray(RATCHET_HEADER_LENGTH, RATCHET_HEADER_LENGTH + NONCE_LENGTH);
    const ciphertext = message.subarray(RATCHET_HEADER_LENGTH + NONCE_LENGTH);
    this.#adHeader.set(message.subarray(0, RATCHET_HEADER_LENGTH), this.#ad.length);

    // §3.5 TrySkippedMessageKeys
    if (this.#skipped.size > 0) {
      const id = skippedId(dhKey, n);
      const entry = this.#skipped.get(id);
      if (entry !== undefined) {
        const plaintext = aeadOpen(entry.messageKey, nonce, this.#adHeader, ciphertext);
        // A failed tag keeps the key: a tampered copy must not destroy the genuine message.
        if (plaintext === undefined)
          throw new TamperedMessageError(`${where}: expected a valid tag for skipped message ${n}`);
        this.#skipped.delete(id);
        wipe(entry.messageKey);
        return plaintext;
      }
    }

    if (this.#dhr !== undefined && bytesEqual(dhKey, this.#dhr)) return this.#decryptInChain(n, nonce, ciphertext);

    const previous = this.#previous.find((p) => bytesEqual(p.dh, dhKey));
    if (previous !== undefined) {
      if (n < previous.length) {
        throw new DuplicateMessageError(`${where}: expected a new message, got ${n} of a finished chain again`);
      }
      throw new TamperedMessageError(`${where}: expected N below ${previous.length} in a finished chain, got ${n}`);
    }
    return this.#decryptWithRatchetStep(dhKey.slice(), pn, n, nonce, ciphertext);
  }

  #decryptInChain(n: number, nonce: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const where = "RatchetSession.decrypt";
    if (this.#ckr === undefined) {
      // Only the initiator's initial DHr (SPK_B) has no receiving chain, and no genuine message uses it.
      throw new TamperedMessageError(
        `${where}: expected a message under a receiving chain, got the initial ratchet key`,
      );
    }
    if (n < this.#nr) throw new DuplicateMessageError(`${where}: expected a new message, got ${n} again`);
    if (n - this.#nr > MAX_SKIP) {
      throw new TooManySkippedError(`${where}: expected to skip at most ${MAX_SKIP} keys, got ${n - this.#nr}`);
    }
    const derived = deriveKeys(this.#ckr, n - this.#nr + 1);
    const messageKey = derived.keys.pop() as Uint8Array;
    const plaintext = aeadOpen(messageKey, nonce, this.#adHeader, ciphertext);
    wipe(messageKey);
    if (plaintext === undefined) {
      wipe(derived.chainKey, ...derived.keys);
      throw new TamperedMessageError(`${where}: expected a valid tag for message ${n}`);
    }
    this.#storeSkipped(this.#dhr as Uint8Array, this.#nr, derived.keys);
    wipe(this.#ckr);
    this.#ckr = derived.chainKey;
    this.#nr = n + 1;
    return plaintext;
  }

  #decryptWithRatchetStep(
    dhKey: Uint8Array,
    pn: number,
    n: number,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
  ): Uint8Array {
    const where = "RatchetSession.decrypt";
    const oldSkip = this.#ckr !== undefined && pn > this.#nr ? pn - this.#nr : 0;
    if (oldSkip > MAX_SKIP) {
      throw new TooManySkippedError(
        `${where}: expected to skip at most ${MAX_SKIP} keys of the previous chain, got ${oldSkip}`,
      );
    }
    if (n > MAX_SKIP) throw new TooManySkippedError(`${where}: expected to skip at most ${MAX_SKIP} keys, got ${n}`);

    // Everything below lives in locals until the tag verifies (§3.5: state changes are discarded on failure).
    const secrets: Uint8Array[] = [];
    let committed = false;
    try {
      const old = this.#ckr !== undefined && oldSkip > 0 ? deriveKeys(this.#ckr, oldSkip) : undefined;
      if (old) secrets.push(old.chainKey, ...old.keys);
      const dhOut1 = dhOrMalformed(this.#dhs.secretKey, dhKey, where);
      const step1 = kdfRk(this.#rootKey, dhOut1);
      secrets.push(dhOut1, step1.rootKey, step1.chainKey);
      const dhs = generateX25519KeyPair(this.#random);
      secrets.push(dhs.secretKey);
      const dhOut2 = dh(dhs.secretKey, dhKey);
      const step2 = kdfRk(step1.rootKey, dhOut2);
      secrets.push(dhOut2, step2.rootKey, step2.chainKey);
      const receiving = deriveKeys(step1.chainKey, n + 1);
      const messageKey = receiving.keys.pop() as Uint8Array;
      secrets.push(receiving.chainKey, messageKey, ...receiving.keys);
      const plaintext = aeadOpen(messageKey, nonce, this.#adHeader, ciphertext);
      if (plaintext === undefined) throw new TamperedMessageError(`${where}: expected a valid tag for message ${n}`);

      // Commit (§3.5 DHRatchet), erasing what the step replaces (§6.1).
      if (this.#dhr !== undefined) {
        this.#previous.push({ dh: this.#dhr, length: Math.max(pn, this.#nr) });
        if (this.#previous.length > MAX_PREVIOUS_CHAINS) this.#previous.shift();
      }
      if (old) this.#storeSkipped(this.#dhr as Uint8Array, this.#nr, old.keys);
      this.#storeSkipped(dhKey, 0, receiving.keys);
      wipe(this.#rootKey, this.#dhs.secretKey, this.#cks, this.#ckr, old?.chainKey);
      this.#pn = this.#ns;
      this.#ns = 0;
      this.#nr = n + 1;
      this.#dhr = dhKey;
      this.#dhs = dhs;
      this.#rootKey = step2.rootKey;
      this.#cks = step2.chainKey;
      this.#ckr = receiving.chainKey;
      committed = true;
      wipe(dhOut1, dhOut2, step1.rootKey, step1.chainKey, messageKey);
      return plaintext;
    } finally {
      if (!committed) wipe(...secrets);
    }
  }

  /** Stores keys for messages first, first + 1, ... of chain `dhKey`, evicting and erasing the oldest beyond the cap. */
  #storeSkipped(dhKey: Uint8Array, first: number, keys: readonly Uint8Array[]): void {
    for (let i = 0; i < keys.length; i++) {
      this.#skipped.set(skippedId(dhKey, first + i), { dh: dhKey, n: first + i, messageKey: keys[i] });
    }
    while (this.#skipped.size > MAX_SKIPPED_KEYS) {
      const [oldestId, oldest] = this.#skipped.entries().next().value as [string, SkippedKey];
      wipe(oldest.messageKey);
      this.#skipped.delete(oldestId);
    }
  }

  /**
   * The session as bytes (strictly parsed by `deserialize`). It contains every secret of the session: store it
   * encrypted, and overwrite the previous snapshot (an old one undoes forward secrecy).
   *
   *   "SNDR" | version u8 | flags u8 (1 DHr, 2 CKs, 4 CKr) | RK 32 | DHs secret 32 | [DHr 32] [CKs 32] [CKr 32]
   *   | Ns u32 | Nr u32 | PN u32 | AD length u16 | AD | skipped count u16 | (DH 32, N u32, MK 32)*
   *   | previous-chain count u8 | (DH 32, length u32)*                    (integers big-endian)
   */
  serialize(): Uint8Array {
    const w = new ByteWriter().bytes(STATE_MAGIC).u8(RATCHET_STATE_VERSION);
    w.u8((this.#dhr ? FLAG_DHR : 0) | (this.#cks ? FLAG_CKS : 0) | (this.#ckr ? FLAG_CKR : 0));
    w.bytes(this.#rootKey).bytes(this.#dhs.secretKey);
    if (this.#dhr) w.bytes(this.#dhr);
    if (this.#cks) w.bytes(this.#cks);
    if (this.#ckr) w.bytes(this.#ckr);
    w.u32(this.#ns).u32(this.#nr).u32(this.#pn);
    w.u16(this.#ad.length).bytes(this.#ad);
    w.u16(this.#skipped.size);
    for (const s of this.#skipped.values()) w.bytes(s.dh).u32(s.n).bytes(s.messageKey);
    w.u8(this.#previous.length);
    for (const p of this.#previous) w.bytes(p.dh).u32(p.length);
    return w.finish();
  }

  /**
   * Restores a session from `serialize`'s bytes. Strict: magic, version, only the flag sets a session can have
   * ({}, {DHr, CKs}, {DHr, CKs, CKr}), counters consistent with them, bounded and unique skipped keys, exact length.
   * Throws MalformedRatchetDataError.
   */
  static deserialize(bytes: Uint8Array, options: RatchetOptions = {}): RatchetSession {
    const where = "RatchetSession.deserialize";
    expectBytes(bytes, undefined, where, "state", malformed);
    const r = new ByteReader(bytes, where, malformed);
    if (!bytesEqual(r.bytes(4, "magic"), STATE_MAGIC)) throw malformed(`${where}: expected magic "SNDR"`);
    const version = r.u8("version");
    if (version !== RATCHET_STATE_VERSION)
      throw malformed(`${where}: expected version ${RATCHET_STATE_VERSION}, got ${version}`);
    const flags = r.u8("flags");
    if (flags !== 0 && flags !== (FLAG_DHR | FLAG_CKS) && flags !== (FLAG_DHR | FLAG_CKS | FLAG_CKR)) {
      throw malformed(`${where}: expected flags 0, 3 or 7, got ${flags}`);
    }
    const rootKey = r.bytes(KEY_LENGTH, "root key");
    const dhsSecret = r.bytes(KEY_LENGTH, "ratchet secret key");
    const dhr = flags & FLAG_DHR ? r.bytes(KEY_LENGTH, "remote ratchet key") : undefined;
    const cks = flags & FLAG_CKS ? r.bytes(KEY_LENGTH, "sending chain key") : undefined;
    const ckr = flags & FLAG_CKR ? r.bytes(KEY_LENGTH, "receiving chain key") : undefined;
    const ns = r.u32("Ns");
    const nr = r.u32("Nr");
    const pn = r.u32("PN");
    if ((cks === undefined && (ns !== 0 || pn !== 0)) || (ckr === undefined && nr !== 0)) {
      throw malformed(`${where}: expected zero counters without chains, got Ns ${ns} Nr ${nr} PN ${pn}`);
    }
    const adLength = r.u16("AD length");
    if (adLength > MAX_ASSOCIATED_DATA_LENGTH) {
      throw malformed(`${where}: expected AD of at most ${MAX_ASSOCIATED_DATA_LENGTH} bytes, got ${adLength}`);
    }
    const ad = r.bytes(adLength, "AD");
    const skippedCount = r.u16("skipped count");
    if (skippedCount > MAX_SKIPPED_KEYS) {
      throw malformed(`${where}: expected at most ${MAX_SKIPPED_KEYS} skipped keys, got ${skippedCount}`);
    }
    const skipped: SkippedKey[] = [];
    const ids = new Set<string>();
    for (let i = 0; i < skippedCount; i++) {
      const entry = {
        dh: r.bytes(KEY_LENGTH, "skipped key DH"),
        n: r.u32("skipped key N"),
        messageKey: r.bytes(KEY_LENGTH, "skipped key"),
      };
      const id = skippedId(entry.dh, entry.n);
      if (ids.has(id)) throw malformed(`${where}: expected unique skipped keys, got message ${entry.n} twice`);
      ids.add(id);
      skipped.push(entry);
    }
    const previousCount = r.u8("previous-chain count");
    if (previousCount > MAX_PREVIOUS_CHAINS) {
      throw malformed(`${where}: expected at most ${MAX_PREVIOUS_CHAINS} previous chains, got ${previousCount}`);
    }
    const previous: PreviousChain[] = [];
    for (let i = 0; i < previousCount; i++) {
      previous.push({ dh: r.bytes(KEY_LENGTH, "previous chain DH"), length: r.u32("previous chain length") });
    }
    r.end();
    const dhs = { secretKey: dhsSecret, publicKey: x25519PublicKey(dhsSecret) };
    const session = new RatchetSession(rootKey, dhs, ad, options.randomBytes, { dhr, cks, ckr, ns, nr, pn });
    wipe(ad);
    for (const s of skipped) session.#skipped.set(skippedId(s.dh, s.n), s);
    session.#previous = previous;
    return session;
  }
}

function checkAssociatedData(ad: unknown, where: string): void {
  const bytes = expectBytes(ad, undefined, where, "associated data", malformed);
  if (bytes.length > MAX_ASSOCIATED_DATA_LENGTH) {
    throw malformed(
      `${where}: expected associated data of at most ${MAX_ASSOCIATED_DATA_LENGTH} bytes, got ${bytes.length}`,
    );
  }
}

function dhOrMalformed(secretKey: Uint8Array, publicKey: Uint8Array, where: string): Uint8Array {
  try {
    return dh(secretKey, publicKey);
  } catch (e) {
    throw malformed(`${where}: expected a valid X25519 ratchet public key (${(e as Error).message})`);
  }
}
