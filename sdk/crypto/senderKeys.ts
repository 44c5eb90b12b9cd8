/**
 * Group messaging by sender keys (Signal's sender-key scheme, as in libsignal's SenderKeyMessage and
 * SenderKeyDistributionMessage): each member holds, per group epoch, a sender key = a symmetric chain key, an
 * iteration and an Ed25519 signing key pair. The member hands the chain key and the signing public key to every
 * other member in a distribution message, sent over their pairwise Double Ratchet sessions (which authenticate who
 * sent it); then one encryption per group message reaches everyone.
 *
 *   message key, next chain key   KDF_CK as in the Double Ratchet: HMAC-SHA-256(ck, 0x01), HMAC-SHA-256(ck, 0x02)
 *   encryption                    ChaCha20-Poly1305 under the message key, random 12-byte nonce,
 *                                 AD = "SendingNetwork_SenderKey_v1" || group id || epoch || header
 *   authenticity                  Ed25519 over the same domain, group id, epoch and the whole message before the
 *                                 signature: every member holds the chain key, only the sender the signing key
 *
 * Distribution message, 121 bytes:  version 0x01 | group id 32 | epoch u32 | key id 16 | iteration u32 |
 *                                   chain key 32 | signing public key 32
 * Group message, 113 + plaintext:   version 0x01 | key id 16 | iteration u32 | nonce 12 | ciphertext || tag 16 |
 *                                   signature 64                                        (integers big-endian)
 *
 * Membership: adding a member sends it the current chain (at the current iteration), so it cannot derive earlier
 * message keys. Removing members is a rekey: every remaining member calls `rekey(removed)`, which erases its own
 * sender key, creates a new one in the next epoch, drops the removed members' keys, and returns the distribution
 * message to send to the remaining members only; the removed member never learns a chain key of the new epoch.
 * Received keys of the previous epoch are kept (PREVIOUS_EPOCHS_KEPT) so messages in flight across a rekey still
 * decrypt. Sender keys have no post-compromise security within an epoch (a symmetric chain only ratchets forward):
 * a periodic `rekey([])` bounds that exposure.
 */
import {
  ByteReader,
  ByteWriter,
  MAX_U32,
  bytesEqual,
  concatBytes,
  expectBytes,
  readU32,
  toHex,
  u32Bytes,
  wipe,
  writeU32,
} from "./bytes";
import {
  KEY_LENGTH,
  NONCE_LENGTH,
  SIGNATURE_LENGTH,
  TAG_LENGTH,
  aeadOpen,
  aeadSeal,
  defaultRandomBytes,
  ed25519PublicKey,
  generateEd25519KeyPair,
  kdfCk,
  randomNonce,
  sign,
  verify,
  type KeyPair,
  type RandomBytes,
} from "./primitives";
import { MAX_SKIP } from "./ratchet";

/** The most message keys one sender chain may skip at once: the same bound as the pairwise ratchet's MAX_SKIP. */
export const SENDER_KEY_MAX_SKIP = MAX_SKIP;
/** Skipped message keys kept per group across all senders; the oldest are evicted and erased beyond it. */
export const SENDER_KEY_MAX_SKIPPED_KEYS = 2 * MAX_SKIP;
/** Received epochs kept before the current one, so messages in flight across a rekey still decrypt. */
export const PREVIOUS_EPOCHS_KEPT = 1;
/** The most other members a group session tracks: bounds its memory and the fan-out of one rekey. */
export const MAX_GROUP_MEMBERS = 1000;
/** Longest member id (UTF-8 bytes), e.g. a DID with a device suffix. */
export const MAX_MEMBER_ID_LENGTH = 255;
/** Length of a group id. */
export const GROUP_ID_LENGTH = 32;
/** Length of a sender key id (random, so epochs and members are unlinkable on the wire). */
export const SENDER_KEY_ID_LENGTH = 16;
/** Version byte of distribution and group messages. */
export const SENDER_KEY_VERSION = 1;
/** Length of a distribution message. */
export const SENDER_KEY_DISTRIBUTION_LENGTH = 1 + GROUP_ID_LENGTH + 4 + SENDER_KEY_ID_LENGTH + 4 + 2 * KEY_LENGTH;
/** Length of a group message header: version, key id, iteration. */
export const SENDER_KEY_HEADER_LENGTH = 1 + SENDER_KEY_ID_LENGTH + 4;
/** Bytes a group message adds to its plaintext. */
export const SENDER_KEY_MESSAGE_OVERHEAD = SENDER_KEY_HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH + SIGNATURE_LENGTH;
/** Version byte of a serialized group session. */
export const GROUP_STATE_VERSION = 1;

/** Which check a SenderKeyError failed. */
export type SenderKeyErrorCode =
  | "TooManySkipped"
  | "Duplicate"
  | "Tampered"
  | "Malformed"
  | "UnknownSenderKey"
  | "StaleEpoch"
  | "NotMember"
  | "Conflict"
  | "Exhausted";

/** The typed error of group messaging; the session is unchanged when one is thrown. */
export class SenderKeyError extends Error {
  /**
   * @param code the failed check
   * @param message names the function and what it expected
   */
  constructor(
    readonly code: SenderKeyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "SenderKeyError";
  }
}

/** A decrypted group message and who sent it. */
export interface GroupPlaintext {
  /** The member whose sender key (distributed over an authenticated pairwise session) signed the message. */
  readonly senderId: string;
  /** The group epoch of that sender key. */
  readonly epoch: number;
  /** The message. */
  readonly plaintext: Uint8Array;
}

/** A parsed distribution message. */
export interface SenderKeyDistribution {
  /** The group. */
  readonly groupId: Uint8Array;
  /** The sender's group epoch. */
  readonly epoch: number;
  /** Random id of the sender key. */
  readonly keyId: Uint8Array;
  /** The iteration `chainKey` is at: the first message the recipient can read. */
  readonly iteration: number;
  /** The chain key at `iteration`. */
  readonly chainKey: Uint8Array;
  /** The sender's Ed25519 public key for this sender key. */
  readonly signingPublicKey: Uint8Array;
}

/** How to create a group session. */
export interface GroupSessionInit {
  /** 32-byte group id (random, chosen by the group's creator). */
  readonly groupId: Uint8Array;
  /** This member's id. */
  readonly selfId: string;
  /** The other members (not `selfId`). */
  readonly members: readonly string[];
  /** The group epoch to start in (0 for a new group; the group's current epoch for a joiner). */
  readonly epoch?: number;
}

/** Runtime options (not serialized). */
export interface GroupSessionOptions {
  /** Randomness for key ids, chain keys, signing keys and nonces; the platform CSPRNG by default. */
  readonly randomBytes?: RandomBytes;
}

interface OwnKey {
  readonly keyId: Uint8Array;
  chainKey: Uint8Array;
  iteration: number;
  readonly signing: KeyPair;
}

interface ReceivedKey {
  readonly senderId: string;
  readonly epoch: number;
  readonly keyId: Uint8Array;
  chainKey: Uint8Array;
  /** The next iteration expected; lower ones are in `skipped` or already used. */
  iteration: number;
  readonly signingPublicKey: Uint8Array;
}

interface SkippedKey {
  readonly keyId: Uint8Array;
  readonly iteration: number;
  readonly messageKey: Uint8Array;
}

const STATE_MAGIC = Uint8Array.of(0x53, 0x4e, 0x47, 0x4b); // "SNGK"
const DOMAIN = new TextEncoder().encode("SendingNetwork_SenderKey_v1");
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const err = (code: SenderKeyErrorCode) => (message: string) => new SenderKeyError(code, message);
const malformed = err("Malformed");
const skippedId = (keyId: Uint8Array, iteration: number) => `${toHex(keyId)}:${iteration}`;

function checkMemberId(id: unknown, where: string): string {
  if (typeof id !== "string" || id.length === 0 || utf8.encode(id).length > MAX_MEMBER_ID_LENGTH) {
    throw malformed(
      `${where}: expected a member id of 1 to ${MAX_MEMBER_ID_LENGTH} UTF-8 bytes, got ${JSON.stringify(id)}`,
    );
  }
  return id;
}

function checkEpoch(epoch: unknown, where: string): number {
  if (typeof epoch !== "number" || !Number.isInteger(epoch) || epoch < 0 || epoch >= MAX_U32) {
    throw malformed(`${where}: expected an epoch in [0, 2^32 - 2], got ${String(epoch)}`);
  }
  return epoch;
}

/** What both AEAD and signature bind: domain || group id || epoch || header (|| nonce || ciphertext for the signature). */
function context(groupId: Uint8Array, epoch: number, rest: Uint8Array): Uint8Array {
  return concatBytes(DOMAIN, groupId, u32Bytes(epoch), rest);
}

/** Parses a distribution message strictly (exact length, version). Throws SenderKeyError "Malformed". */
export function decodeSenderKeyDistribution(bytes: Uint8Array): SenderKeyDistribution {
  const where = "decodeSenderKeyDistribution";
  expectBytes(bytes, SENDER_KEY_DISTRIBUTION_LENGTH, where, "distribution message", malformed);
  const r = new ByteReader(bytes, where, malformed);
  const version = r.u8("version");
  if (version !== SENDER_KEY_VERSION)
    throw malformed(`${where}: expected version ${SENDER_KEY_VERSION}, got ${version}`);
  const d = {
    groupId: r.bytes(GROUP_ID_LENGTH, "group id"),
    epoch: r.u32("epoch"),
    keyId: r.bytes(SENDER_KEY_ID_LENGTH, "key id"),
    iteration: r.u32("iteration"),
    chainKey: r.bytes(KEY_LENGTH, "chain key"),
    signingPublicKey: r.bytes(KEY_LENGTH, "signing public key"),
  };
  r.end();
  return d;
}

/** Encodes a distribution message (121 bytes). It carries a chain key: send it only inside a pairwise session. */
export function encodeSenderKeyDistribution(d: SenderKeyDistribution): Uint8Array {
  const where = "encodeSenderKeyDistribution";
  expectBytes(d?.groupId, GROUP_ID_LENGTH, where, "group id", malformed);
  expectBytes(d.keyId, SENDER_KEY_ID_LENGTH, where, "key id", malformed);
  expectBytes(d.chainKey, KEY_LENGTH, where, "chain key", malformed);
  expectBytes(d.signingPublicKey, KEY_LENGTH, where, "signing public key", malformed);
  return new ByteWriter()
    .u8(SENDER_KEY_VERSION)
    .bytes(d.groupId)
    .u32(checkEpoch(d.epoch, where))
    .bytes(d.keyId)
    .u32(d.iteration)
    .bytes(d.chainKey)
    .bytes(d.signingPublicKey)
    .finish();
}

/**
 * One member's view of one group: its own sender key for the current epoch, and the sender keys it received from
 * the other members. Not safe for concurrent use (no method is async).
 */
export class GroupSession {
  readonly #groupId: Uint8Array;
  readonly #selfId: string;
  readonly #members = new Set<string>();
  #epoch: number;
  #own: OwnKey;
  /** Received sender keys by hex key id. */
  readonly #received = new Map<string, ReceivedKey>();
  /** Skipped message keys by `keyId:iteration`, oldest first. */
  readonly #skipped = new Map<string, SkippedKey>();
  readonly #random: RandomBytes;
  /** The injected random source, if any: nonces then come from it too. */
  readonly #injectedRandom: RandomBytes | undefined;

  private constructor(
    groupId: Uint8Array,
    selfId: string,
    epoch: number,
    own: OwnKey,
    random: RandomBytes | undefined,
  ) {
    this.#groupId = groupId;
    this.#selfId = selfId;
    this.#epoch = epoch;
    this.#own = own;
    this.#random = random ?? defaultRandomBytes;
    this.#injectedRandom = random;
  }

  /** A new session with a fresh sender key in `init.epoch` (0 by default). */
  static create(init: GroupSessionInit, options: GroupSessionOptions = {}): GroupSession {
    const where = "GroupSession.create";
    expectBytes(init?.groupId, GROUP_ID_LENGTH, where, "group id", malformed);
    const selfId = checkMemberId(init.selfId, where);
    const epoch = checkEpoch(init.epoch ?? 0, where);
    if (!Array.isArray(init.members) || init.members.length > MAX_GROUP_MEMBERS) {
      throw malformed(`${where}: expected at most ${MAX_GROUP_MEMBERS} other members`);
    }
    const session = new GroupSession(
      init.groupId.slice(),
      selfId,
      epoch,
      newOwnKey(options.randomBytes ?? defaultRandomBytes),
      options.randomBytes,
    );
    for (const m of init.members) session.#addMember(m, where);
    return session;
  }

  /** The group id (a copy). */
  get groupId(): Uint8Array {
    return this.#groupId.slice();
  }

  /** This member's id. */
  get selfId(): string {
    return this.#selfId;
  }

  /** The epoch of this member's own sender key. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The other members, in insertion order. */
  get members(): readonly string[] {
    return [...this.#members];
  }

  /** Skipped message keys currently stored (bounded by SENDER_KEY_MAX_SKIPPED_KEYS). */
  get skippedKeyCount(): number {
    return this.#skipped.size;
  }

  #addMember(id: string, where: string): void {
    checkMemberId(id, where);
    if (id === this.#selfId)
      throw err("Conflict")(`${where}: expected another member's id, got our own ${JSON.stringify(id)}`);
    if (!this.#members.has(id) && this.#members.size >= MAX_GROUP_MEMBERS) {
      throw malformed(`${where}: expected at most ${MAX_GROUP_MEMBERS} other members`);
    }
    this.#members.add(id);
  }

  /**
   * This member's distribution message at its current iteration: send it, inside the pairwise session, to each
   * member that lacks it (all members after `create` or `rekey`, a joiner after `addMember`).
   */
  distributionMessage(): Uint8Array {
    return encodeSenderKeyDistribution({
      groupId: this.#groupId,
      epoch: this.#epoch,
      keyId: this.#own.keyId,
      iteration: this.#own.iteration,
      chainKey: this.#own.chainKey,
      signingPublicKey: this.#own.signing.publicKey,
    });
  }

  /**
   * Adds a member (no rekey: it receives the chain at the current iteration and so cannot read earlier messages)
   * and returns this member's distribution message for it.
   */
  addMember(memberId: string): Uint8Array {
    this.#addMember(memberId, "GroupSession.addMember");
    return this.distributionMessage();
  }

  /**
   * Rekey, e.g. on removing members: forgets `removed` and every key they distributed, erases this member's own
   * sender key, creates a fresh one in the next epoch, drops received keys older than PREVIOUS_EPOCHS_KEPT epochs,
   * and returns the new distribution message for the remaining members. Every remaining member must do the same.
   * `epoch` (the next one by default) lets a member that missed rekeys catch up with the others in one step.
   */
  rekey(removed: readonly string[] = [], epoch: number = this.#epoch + 1): Uint8Array {
    const where = "GroupSession.rekey";
    for (const id of removed) {
      if (!this.#members.has(id))
        throw err("NotMember")(`${where}: expected a current member, got ${JSON.stringify(id)}`);
    }
    if (epoch >= MAX_U32) throw err("Exhausted")(`${where}: expected an epoch below 2^32 - 2`);
    if (!Number.isInteger(epoch) || epoch <= this.#epoch) {
      throw malformed(`${where}: expected an epoch after ${this.#epoch}, got ${epoch}`);
    }
    for (const id of removed) this.#members.delete(id);
    for (const [hex, key] of this.#received) {
      if (!this.#members.has(key.senderId) || key.epoch + PREVIOUS_EPOCHS_KEPT < epoch) this.#dropReceived(hex);
    }
    wipe(this.#own.chainKey, this.#own.signing.secretKey);
    this.#own = newOwnKey(this.#random);
    this.#epoch = epoch;
    return this.distributionMessage();
  }

  /**
   * Takes a member's distribution message, received from `senderId` over the pairwise session. Idempotent for a
   * key already held (it never rewinds a chain); a new key for the same sender and epoch replaces the old one.
   * Throws SenderKeyError: "Malformed" (including another group's id), "NotMember", "StaleEpoch", "Conflict".
   */
  processDistribution(senderId: string, message: Uint8Array): void {
    const where = "GroupSession.processDistribution";
    checkMemberId(senderId, where);
    if (!this.#members.has(senderId))
      throw err("NotMember")(`${where}: expected a member, got ${JSON.stringify(senderId)}`);
    const d = decodeSenderKeyDistribution(message);
    if (!bytesEqual(d.groupId, this.#groupId)) throw malformed(`${where}: expected this session's group id`);
    if (d.epoch + PREVIOUS_EPOCHS_KEPT < this.#epoch) {
      throw err("StaleEpoch")(
        `${where}: expected epoch ${this.#epoch - PREVIOUS_EPOCHS_KEPT} or later, got ${d.epoch}`,
      );
    }
    const hex = toHex(d.keyId);
    const known = this.#received.get(hex);
    if (known !== undefined) {
      if (
        known.senderId !== senderId ||
        known.epoch !== d.epoch ||
        !bytesEqual(known.signingPublicKey, d.signingPublicKey)
      ) {
        throw err("Conflict")(`${where}: expected key ${hex} to keep its sender, epoch and signing key`);
      }
      wipe(d.chainKey);
      return;
    }
    // At most PREVIOUS_EPOCHS_KEPT + 1 keys per sender, one per epoch, in a window of that many epochs.
    let newest = -1;
    for (const key of this.#received.values()) if (key.senderId === senderId) newest = Math.max(newest, key.epoch);
    if (d.epoch + PREVIOUS_EPOCHS_KEPT < newest) {
      throw err("StaleEpoch")(
        `${where}: expected epoch ${newest - PREVIOUS_EPOCHS_KEPT} or later from this sender, got ${d.epoch}`,
      );
    }
    for (const [otherHex, key] of this.#received) {
      if (key.senderId === senderId && (key.epoch === d.epoch || key.epoch + PREVIOUS_EPOCHS_KEPT < d.epoch)) {
        this.#dropReceived(otherHex);
      }
    }
    this.#received.set(hex, { senderId, ...d });
  }

  #dropReceived(hex: string): void {
    const key = this.#received.get(hex);
    if (key === undefined) return;
    for (const [id, s] of this.#skipped) {
      if (bytesEqual(s.keyId, key.keyId)) {
        wipe(s.messageKey);
        this.#skipped.delete(id);
      }
    }
    wipe(key.chainKey);
    this.#received.delete(hex);
  }

  /** Encrypts and signs `plaintext` for the group under this member's current sender key (one chain step). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    const where = "GroupSession.encrypt";
    expectBytes(plaintext, undefined, where, "plaintext", malformed);
    if (this.#own.iteration === MAX_U32) throw err("Exhausted")(`${where}: expected iteration below 2^32 - 1; rekey`);
    const nonce = randomNonce(NONCE_LENGTH, this.#injectedRandom);
    const { messageKey, chainKey } = kdfCk(this.#own.chainKey);
    wipe(this.#own.chainKey);
    this.#own.chainKey = chainKey;
    const bodyLength = SENDER_KEY_HEADER_LENGTH + NONCE_LENGTH + plaintext.length + TAG_LENGTH;
    const out = new Uint8Array(bodyLength + SIGNATURE_LENGTH);
    out[0] = SENDER_KEY_VERSION;
    out.set(this.#own.keyId, 1);
    writeU32(out, 1 + SENDER_KEY_ID_LENGTH, this.#own.iteration);
    out.set(nonce, SENDER_KEY_HEADER_LENGTH);
    const ad = context(this.#groupId, this.#epoch, out.subarray(0, SENDER_KEY_HEADER_LENGTH));
    aeadSeal(
      messageKey,
      out.subarray(SENDER_KEY_HEADER_LENGTH, SENDER_KEY_HEADER_LENGTH + NONCE_LENGTH),
      ad,
      plaintext,
      out.subarray(SENDER_KEY_HEADER_LENGTH + NONCE_LENGTH, bodyLength),
    );
    wipe(messageKey);
    out.set(
      sign(this.#own.signing.secretKey, context(this.#groupId, this.#epoch, out.subarray(0, bodyLength))),
      bodyLength,
    );
    this.#own.iteration++;
    return out;
  }

  /**
   * The sender (member id) of the sender key a group message names, or undefined when this member holds no such key;
   * nothing is verified and the session is not touched. A receiver checks it against the pairwise sender before
   * `decrypt`, which uses up the chain step: a member forwarding another's message as its own must not spend it.
   */
  senderOf(message: Uint8Array): string | undefined {
    if (!(message instanceof Uint8Array) || message.length < 1 + SENDER_KEY_ID_LENGTH) return undefined;
    return this.#received.get(toHex(message.subarray(1, 1 + SENDER_KEY_ID_LENGTH)))?.senderId;
  }

  /**
   * Verifies and decrypts a group message. Throws SenderKeyError ("Malformed", "UnknownSenderKey", "Tampered",
   * "Duplicate", "TooManySkipped") and then leaves the session unchanged.
   */
  decrypt(message: Uint8Array): GroupPlaintext {
    const where = "GroupSession.decrypt";
    expectBytes(message, undefined, where, "message", malformed);
    if (message.length < SENDER_KEY_MESSAGE_OVERHEAD) {
      throw malformed(`${where}: expected at least ${SENDER_KEY_MESSAGE_OVERHEAD} bytes, got ${message.length}`);
    }
    if (message[0] !== SENDER_KEY_VERSION)
      throw malformed(`${where}: expected version ${SENDER_KEY_VERSION}, got ${message[0]}`);
    const keyIdBytes = message.subarray(1, 1 + SENDER_KEY_ID_LENGTH);
    const key = this.#received.get(toHex(keyIdBytes));
    if (key === undefined) {
      throw err("UnknownSenderKey")(
        `${where}: expected a sender key this member received, got key ${toHex(keyIdBytes)}`,
      );
    }
    const iteration = readU32(message, 1 + SENDER_KEY_ID_LENGTH);
    const bodyLength = message.length - SIGNATURE_LENGTH;
    const body = message.subarray(0, bodyLength);
    if (!verify(key.signingPublicKey, context(this.#groupId, key.epoch, body), message.subarray(bodyLength))) {
      throw err("Tampered")(`${where}: expected a valid signature by ${JSON.stringify(key.senderId)}`);
    }
    const nonce = message.subarray(SENDER_KEY_HEADER_LENGTH, SENDER_KEY_HEADER_LENGTH + NONCE_LENGTH);
    const ciphertext = message.subarray(SENDER_KEY_HEADER_LENGTH + NONCE_LENGTH, bodyLength);
    const ad = context(this.#groupId, key.epoch, message.subarray(0, SENDER_KEY_HEADER_LENGTH));
    const result = (plaintext: Uint8Array): GroupPlaintext => ({ senderId: key.senderId, epoch: key.epoch, plaintext });

    const id = skippedId(key.keyId, iteration);
    const skipped = this.#skipped.get(id);
    if (skipped !== undefined) {
      const plaintext = aeadOpen(skipped.messageKey, nonce, ad, ciphertext);
      if (plaintext === undefined)
        throw err("Tampered")(`${where}: expected a valid tag for skipped iteration ${iteration}`);
      this.#skipped.delete(id);
      wipe(skipped.messageKey);
      return result(plaintext);
    }
    if (iteration < key.iteration) {
      throw err("Duplicate")(`${where}: expected a new iteration, got ${iteration} (already used or before this key)`);
    }
    if (iteration - key.iteration > SENDER_KEY_MAX_SKIP) {
      throw err("TooManySkipped")(
        `${where}: expected to skip at most ${SENDER_KEY_MAX_SKIP} keys, got ${iteration - key.iteration}`,
      );
    }
    const keys: Uint8Array[] = [];
    let ck = key.chainKey;
    for (let i = key.iteration; i <= iteration; i++) {
      const next = kdfCk(ck);
      if (ck !== key.chainKey) wipe(ck);
      keys.push(next.messageKey);
      ck = next.chainKey;
    }
    const messageKey = keys.pop() as Uint8Array;
    const plaintext = aeadOpen(messageKey, nonce, ad, ciphertext);
    wipe(messageKey);
    if (plaintext === undefined) {
      wipe(ck, ...keys);
      throw err("Tampered")(`${where}: expected a valid tag for iteration ${iteration}`);
    }
    for (let i = 0; i < keys.length; i++) {
      const it = key.iteration + i;
      this.#skipped.set(skippedId(key.keyId, it), { keyId: key.keyId, iteration: it, messageKey: keys[i] });
    }
    while (this.#skipped.size > SENDER_KEY_MAX_SKIPPED_KEYS) {
      const [oldestId, oldest] = this.#skipped.entries().next().value as [string, SkippedKey];
      wipe(oldest.messageKey);
      this.#skipped.delete(oldestId);
    }
    wipe(key.chainKey);
    key.chainKey = ck;
    key.iteration = iteration + 1;
    return result(plaintext);
  }

  /**
   * The session as bytes (strictly parsed by `deserialize`); it holds every secret, so store it encrypted and
   * overwrite the previous snapshot.
   *
   *   "SNGK" | version u8 | group id 32 | self id (u8 length, UTF-8) | epoch u32
   *   | own: key id 16, iteration u32, chain key 32, signing secret 32
   *   | member count u16 | (u8 length, UTF-8)*
   *   | received count u16 | (sender id (u8 length, UTF-8), epoch u32, key id 16, iteration u32, chain key 32,
   *                           signing public key 32)*
   *   | skipped count u16 | (key id 16, iteration u32, message key 32)*
   */
  serialize(): Uint8Array {
    const w = new ByteWriter().bytes(STATE_MAGIC).u8(GROUP_STATE_VERSION).bytes(this.#groupId);
    const id = (s: string) => {
      const b = utf8.encode(s);
      w.u8(b.length).bytes(b);
    };
    id(this.#selfId);
    w.u32(this.#epoch)
      .bytes(this.#own.keyId)
      .u32(this.#own.iteration)
      .bytes(this.#own.chainKey)
      .bytes(this.#own.signing.secretKey);
    w.u16(this.#members.size);
    for (const m of this.#members) id(m);
    w.u16(this.#received.size);
    for (const k of this.#received.values()) {
      id(k.senderId);
      w.u32(k.epoch).bytes(k.keyId).u32(k.iteration).bytes(k.chainKey).bytes(k.signingPublicKey);
    }
    w.u16(this.#skipped.size);
    for (const s of this.#skipped.values()) w.bytes(s.keyId).u32(s.iteration).bytes(s.messageKey);
    return w.finish();
  }

  /**
   * Restores a session from `serialize`'s bytes. Strict: magic, version, valid UTF-8 ids, unique members that are
   * not self, received keys from members with unique ids, skipped keys of held sender keys below their iteration,
   * bounded counts, exact length. Throws SenderKeyError "Malformed".
   */
  static deserialize(bytes: Uint8Array, options: GroupSessionOptions = {}): GroupSession {
    const where = "GroupSession.deserialize";
    expectBytes(bytes, undefined, where, "state", malformed);
    const r = new ByteReader(bytes, where, malformed);
    if (!bytesEqual(r.bytes(4, "magic"), STATE_MAGIC)) throw malformed(`${where}: expected magic "SNGK"`);
    const version = r.u8("version");
    if (version !== GROUP_STATE_VERSION)
      throw malformed(`${where}: expected version ${GROUP_STATE_VERSION}, got ${version}`);
    const readId = (what: string): string => {
      const b = r.bytes(r.u8(`${what} length`), what);
      let s: string;
      try {
        s = utf8Strict.decode(b);
      } catch {
        throw malformed(`${where}: expected ${what} as UTF-8`);
      }
      return checkMemberId(s, where);
    };
    const groupId = r.bytes(GROUP_ID_LENGTH, "group id");
    const selfId = readId("self id");
    const epoch = checkEpoch(r.u32("epoch"), where);
    const keyId = r.bytes(SENDER_KEY_ID_LENGTH, "own key id");
    const iteration = r.u32("own iteration");
    const chainKey = r.bytes(KEY_LENGTH, "own chain key");
    const signingSecret = r.bytes(KEY_LENGTH, "own signing key");
    const own: OwnKey = {
      keyId,
      iteration,
      chainKey,
      signing: { secretKey: signingSecret, publicKey: ed25519PublicKey(signingSecret) },
    };
    const session = new GroupSession(groupId, selfId, epoch, own, options.randomBytes);
    const memberCount = r.u16("member count");
    if (memberCount > MAX_GROUP_MEMBERS)
      throw malformed(`${where}: expected at most ${MAX_GROUP_MEMBERS} members, got ${memberCount}`);
    for (let i = 0; i < memberCount; i++) {
      const m = readId("member id");
      if (m === selfId || session.#members.has(m))
        throw malformed(`${where}: expected unique other members, got ${JSON.stringify(m)}`);
      session.#members.add(m);
    }
    const receivedCount = r.u16("received count");
    if (receivedCount > (PREVIOUS_EPOCHS_KEPT + 1) * memberCount) {
      throw malformed(
        `${where}: expected at most ${(PREVIOUS_EPOCHS_KEPT + 1) * memberCount} received keys, got ${receivedCount}`,
      );
    }
    for (let i = 0; i < receivedCount; i++) {
      const senderId = readId("sender id");
      const k: ReceivedKey = {
        senderId,
        epoch: r.u32("epoch"),
        keyId: r.bytes(SENDER_KEY_ID_LENGTH, "key id"),
        iteration: r.u32("iteration"),
        chainKey: r.bytes(KEY_LENGTH, "chain key"),
        signingPublicKey: r.bytes(KEY_LENGTH, "signing public key"),
      };
      const hex = toHex(k.keyId);
      if (!session.#members.has(senderId) || session.#received.has(hex)) {
        throw malformed(`${where}: expected unique keys from members, got key ${hex} of ${JSON.stringify(senderId)}`);
      }
      session.#received.set(hex, k);
    }
    const skippedCount = r.u16("skipped count");
    if (skippedCount > SENDER_KEY_MAX_SKIPPED_KEYS) {
      throw malformed(`${where}: expected at most ${SENDER_KEY_MAX_SKIPPED_KEYS} skipped keys, got ${skippedCount}`);
    }
    for (let i = 0; i < skippedCount; i++) {
      const s = {
        keyId: r.bytes(SENDER_KEY_ID_LENGTH, "skipped key id"),
        iteration: r.u32("skipped iteration"),
        messageKey: r.bytes(KEY_LENGTH, "skipped key"),
      };
      const owner = session.#received.get(toHex(s.keyId));
      const id = skippedId(s.keyId, s.iteration);
      if (owner === undefined || s.iteration >= owner.iteration || session.#skipped.has(id)) {
        throw malformed(`${where}: expected unique skipped keys of held sender keys, got ${id}`);
      }
      session.#skipped.set(id, s);
    }
    r.end();
    return session;
  }
}

function newOwnKey(random: RandomBytes): OwnKey {
  const keyId = random(SENDER_KEY_ID_LENGTH);
  const chainKey = random(KEY_LENGTH);
  if (keyId?.length !== SENDER_KEY_ID_LENGTH || chainKey?.length !== KEY_LENGTH) {
    throw malformed(`GroupSession: expected the random source to return the requested lengths`);
  }
  return { keyId, chainKey, iteration: 0, signing: generateEd25519KeyPair(random) };
}
