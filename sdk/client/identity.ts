/**
 * The client's identity, bound to the user's wallet.
 *
 * The wallet signs one fixed, domain-separated message (EIP-191 personal_sign, `walletMessage`) naming the account,
 * the chain id and the DID registry. The signature's (r, s) is the input of HKDF-SHA-256, which gives a 32-byte
 * wallet root and from it three keys (docs/SDK.md "Key derivation"):
 *
 *   root       = HKDF(IKM = r || s, salt = SHA-256("SendingNetwork_wallet_root_v1"),
 *                     info = "SendingNetwork_wallet_root_v1" || account 20 || chainId u64 || registry 20)
 *   storageKey = HKDF(root, info = "SendingNetwork_storage_v1")   encrypts everything this module stores
 *   backupKey  = HKDF(root, info = "SendingNetwork_backup_v1")    encrypts the contacts/history backup
 *   billSecret = HKDF(root, info = "SendingNetwork_bill_v1")      the Baby Jubjub bill private key
 *
 * Wallets sign deterministically (RFC 6979), so the same wallet gives the same keys in any app: that is how another
 * app restores the backup and finds the same bill key in the identity tree.
 *
 * The messaging keys (X25519 + Ed25519 identity, signed prekey, one-time prekeys) are **random**, drawn once per
 * storage and kept in the StorageAdapter encrypted under `storageKey`. Deriving them from the wallet would make a
 * single leaked signature a permanent compromise: every identity and signed-prekey secret would follow from it, and
 * with them the first messages of every recorded session; random keys can be rotated without a new wallet. A second
 * app with the same wallet therefore has its own identity keys (a second device, see `DidClient.setDevices`), and
 * recovers contacts and history from the backup.
 *
 * Everything secret (identity, prekeys, ratchet session snapshots) is stored through `EncryptedStore`; docs/SDK.md
 * "What is stored where" lists the records.
 */
import { getAddress, Signature, verifyMessage, type Signer } from "ethers";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { billKeyOf, type BabyJubjubPoint } from "../bill/bill";
import { ByteReader, ByteWriter, bytesEqual, concatBytes, wipe } from "../crypto/bytes";
import {
  KEY_LENGTH,
  NONCE_LENGTH,
  SIGNATURE_LENGTH,
  aeadOpen,
  aeadSeal,
  defaultRandomBytes,
  randomNonce,
  TAG_LENGTH,
  x25519PublicKey,
  type RandomBytes,
} from "../crypto/primitives";
import { RatchetSession, type RatchetOptions } from "../crypto/ratchet";
import {
  acceptSession,
  initiateSession,
  type AcceptedSession,
  type InitiatedSession,
  type PrekeyStore,
} from "../crypto/session";
import {
  X3DH_HEADER_LENGTH,
  X3dhError,
  decodeX3dhHeader,
  generateIdentityKeyPair,
  generateOneTimePrekeys,
  generateSignedPrekey,
  identityKeyPairFromSecrets,
  identityPublicKey,
  prekeyBundle,
  signedPrekeyMessage,
  type IdentityKeyPair,
  type IdentityPublicKey,
  type OneTimePrekey,
  type PrekeyBundle,
  type SignedPrekey,
  type X3dhHeader,
} from "../crypto/x3dh";
import type { StorageAdapter } from "../storage/adapter";

/** First line of the wallet message; a new derivation takes a new version. */
export const WALLET_MESSAGE_TITLE = "Sending Network identity v1";
/** One-time prekeys drawn when an identity is created, and the default of `addOneTimePrekeys`. */
export const DEFAULT_ONE_TIME_PREKEYS = 20;
/**
 * Base keys of initial messages without a one-time prekey remembered per signed prekey (32 bytes each, 128 KiB at
 * most): a week of new contacts many times over; past it the oldest is forgotten, and a replay of that one message
 * opens a second session (whose replies the replayer cannot read), as with no record at all.
 */
export const MAX_USED_BASE_KEYS = 4096;
/** An initial message opened by `ClientIdentity.openSession`, not yet committed. */
export interface OpenedSession extends AcceptedSession {
  /**
   * Deletes the one-time prekey the message used or, without one, notes its base key; once (later calls do nothing).
   * Throws X3dhError("Replayed") if the same base key was noted meanwhile.
   */
  commit(): Promise<void>;
}

/** Signed prekeys kept after a rotation, so initial messages sent to the previous one still open (X3DH §4.6). */
export const PREVIOUS_SIGNED_PREKEYS_KEPT = 1;
/** Version byte of every record this module stores. */
export const IDENTITY_RECORD_VERSION = 1;

const ROOT_INFO = "SendingNetwork_wallet_root_v1";
const STORAGE_INFO = "SendingNetwork_storage_v1";
const BACKUP_INFO = "SendingNetwork_backup_v1";
const BILL_INFO = "SendingNetwork_bill_v1";
const utf8 = (s: string) => new TextEncoder().encode(s);

/** What went wrong with the wallet-bound identity. */
export type IdentityErrorCode =
  /** The wallet's signature does not recover to its own address (a broken or lying signer). */
  | "WalletSignatureInvalid"
  /**
   * The storage holds an identity this wallet's key cannot open: another wallet's, or this wallet signed differently
   * (a signer that is not deterministic cannot be used).
   */
  | "WalletMismatch"
  /** A stored record does not decrypt or parse: the storage was altered or damaged. */
  | "CorruptStorage"
  /** An argument is out of range (a prekey count, an id). */
  | "InvalidArgument";

/** The typed error of this module; `code` says which check failed. */
export class IdentityError extends Error {
  /**
   * @param code which check failed
   * @param message names the function and what it expected
   */
  constructor(
    readonly code: IdentityErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "IdentityError";
  }
}

/** Where the identity lives on chain: the chain id and the DID registry address (from a Deployment). */
export interface IdentityDomain {
  /** The chain's id (EIP-155). */
  readonly chainId: bigint | number;
  /** The DidRegistry address. */
  readonly didRegistry: string;
}

/** Options of `ClientIdentity.open`. */
export interface OpenIdentityOptions extends IdentityDomain {
  /** The user's wallet: signs the wallet message once, when the identity opens. */
  readonly signer: Signer;
  /** Where the identity's encrypted records live. */
  readonly storage: StorageAdapter;
  /** One-time prekeys to draw for a new identity (default DEFAULT_ONE_TIME_PREKEYS). */
  readonly oneTimePrekeys?: number;
  /** Randomness for new keys (default: the platform CSPRNG); tests inject a fixed one. */
  readonly randomBytes?: RandomBytes;
  /**
   * The clock that stamps when a signed prekey was made (ms since the epoch; default `Date.now`). Only the signed
   * prekey's age uses it: tests and apps that control time inject their own.
   */
  readonly now?: () => number;
}

/** The keys derived from the wallet signature (see the module comment). */
export interface WalletKeys {
  /** Encrypts the identity's records at rest. */
  readonly storageKey: Uint8Array;
  /** Encrypts the contacts/history backup. */
  readonly backupKey: Uint8Array;
  /** The Baby Jubjub bill private key (32 bytes, sdk/bill/bill.ts). */
  readonly billSecret: Uint8Array;
}

/**
 * The message the wallet signs (EIP-191 personal_sign). It names what the signature unlocks, so a user who reads it
 * knows; the account, chain id and registry bind the keys to one deployment.
 */
export function walletMessage(account: string, domain: IdentityDomain): string {
  return [
    WALLET_MESSAGE_TITLE,
    "",
    "Sign to unlock your end-to-end encrypted messages. This costs nothing and sends no transaction.",
    "Only sign this in apps you trust with your messages and contacts.",
    "",
    `Account: ${getAddress(account)}`,
    `Chain id: ${BigInt(domain.chainId).toString()}`,
    `DID registry: ${getAddress(domain.didRegistry)}`,
  ].join("\n");
}

function u64Bytes(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value);
  return out;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex.slice(2), "hex"));
}

/**
 * The wallet keys of `signature` (a 65-byte EIP-191 signature by `account` over `walletMessage`). Only (r, s) enter
 * the derivation, so wallets that encode v as 0/1 or 27/28 agree. Does not check the signature: `deriveWalletKeys`
 * does.
 */
export function walletKeysFromSignature(signature: string, account: string, domain: IdentityDomain): WalletKeys {
  const sig = Signature.from(signature);
  const ikm = concatBytes(hexBytes(sig.r), hexBytes(sig.s));
  const context = concatBytes(
    utf8(ROOT_INFO),
    hexBytes(getAddress(account)),
    u64Bytes(BigInt(domain.chainId)),
    hexBytes(getAddress(domain.didRegistry)),
  );
  const root = hkdf(sha256, ikm, sha256(utf8(ROOT_INFO)), context, KEY_LENGTH);
  const derive = (info: string) => hkdf(sha256, root, undefined, utf8(info), KEY_LENGTH);
  try {
    return { storageKey: derive(STORAGE_INFO), backupKey: derive(BACKUP_INFO), billSecret: derive(BILL_INFO) };
  } finally {
    wipe(ikm, root);
  }
}

/**
 * Asks `signer` to sign `walletMessage`, checks the signature recovers to the signer's address, and derives the
 * wallet keys. Throws IdentityError("WalletSignatureInvalid").
 */
export async function deriveWalletKeys(
  signer: Signer,
  domain: IdentityDomain,
): Promise<{ account: string; keys: WalletKeys }> {
  const account = getAddress(await signer.getAddress());
  const message = walletMessage(account, domain);
  const signature = await signer.signMessage(message);
  let recovered: string;
  try {
    recovered = verifyMessage(message, signature);
  } catch (error) {
    throw new IdentityError(
      "WalletSignatureInvalid",
      `deriveWalletKeys: expected a valid EIP-191 signature, got ${(error as Error).message}`,
    );
  }
  if (recovered !== account) {
    throw new IdentityError(
      "WalletSignatureInvalid",
      `deriveWalletKeys: expected a signature by ${account}, got one by ${recovered}`,
    );
  }
  return { account, keys: walletKeysFromSignature(signature, account, domain) };
}

/**
 * Records of one wallet in a StorageAdapter, each encrypted with ChaCha20-Poly1305 under the storage key:
 * `version 0x01 | nonce 12 | ciphertext + tag`, with associated data "SendingNetwork_storage_v1" || the full key, so
 * a record moved to another key (or another wallet's namespace) does not open. Keys are namespaced
 * "sn1/<account lowercase>/", so one adapter can hold several wallets.
 */
export class EncryptedStore {
  readonly #key: Uint8Array;
  /** The prefix of every key of this store. */
  readonly namespace: string;

  /**
   * @param storage the adapter underneath
   * @param storageKey the 32-byte storage key (copied)
   * @param account the wallet address, for the namespace
   * @param randomBytes nonce source (tests)
   */
  constructor(
    private readonly storage: StorageAdapter,
    storageKey: Uint8Array,
    account: string,
    private readonly randomBytes?: RandomBytes,
  ) {
    this.#key = storageKey.slice();
    this.namespace = `sn1/${getAddress(account).toLowerCase()}/`;
  }

  /** The decrypted record `name`, or undefined. Throws IdentityError("CorruptStorage") if it does not open. */
  async get(name: string): Promise<Uint8Array | undefined> {
    const key = this.namespace + name;
    const sealed = await this.storage.get(key);
    if (sealed === undefined) return undefined;
    if (sealed.length < 1 + NONCE_LENGTH + TAG_LENGTH || sealed[0] !== IDENTITY_RECORD_VERSION) {
      throw new IdentityError("CorruptStorage", `EncryptedStore.get: expected a version-1 record at '${key}'`);
    }
    const plain = aeadOpen(
      this.#key,
      sealed.subarray(1, 1 + NONCE_LENGTH),
      this.#associatedData(key),
      sealed.subarray(1 + NONCE_LENGTH),
    );
    if (plain === undefined) {
      throw new IdentityError("CorruptStorage", `EncryptedStore.get: expected record '${key}' to decrypt`);
    }
    return plain;
  }

  /** Encrypts `value` and stores it as record `name`, replacing the previous one. */
  async put(name: string, value: Uint8Array): Promise<void> {
    const key = this.namespace + name;
    const sealed = new Uint8Array(1 + NONCE_LENGTH + value.length + TAG_LENGTH);
    sealed[0] = IDENTITY_RECORD_VERSION;
    const nonce = randomNonce(NONCE_LENGTH, this.randomBytes);
    sealed.set(nonce, 1);
    aeadSeal(this.#key, nonce, this.#associatedData(key), value, sealed.subarray(1 + NONCE_LENGTH));
    await this.storage.put(key, sealed);
  }

  /** Removes record `name`. */
  async delete(name: string): Promise<void> {
    await this.storage.delete(this.namespace + name);
  }

  /** The names of the records starting with `prefix`. */
  async list(prefix: string): Promise<string[]> {
    const keys = await this.storage.list(this.namespace + prefix);
    return keys.map((key) => key.slice(this.namespace.length));
  }

  #associatedData(key: string): Uint8Array {
    return concatBytes(utf8(STORAGE_INFO), utf8(key));
  }
}

const META = "meta";
const IDENTITY = "identity";
const SIGNED_PREFIX = "prekeys/signed/";
const ONE_TIME_PREFIX = "prekeys/one-time/";
const SESSION_PREFIX = "sessions/";
/**
 * Storage prefix of the base keys (EK_A) of initial messages accepted without a one-time prekey, one record per
 * signed prekey id: EK_A (32 each), oldest first. Such a message can be replayed (X3DH §4.2); its base key refused
 * a second time makes the replay fail. The record goes with its signed prekey: a replay to a deleted one fails anyway.
 */
const USED_BASE_KEYS_PREFIX = "prekeys/used-base-keys/";
const idName = (prefix: string, id: number) => prefix + id.toString(16).padStart(8, "0");
const META_MAGIC = utf8("SNID");
/** Bytes of a meta record of the first layout: magic, signed prekey id, next one-time id (no creation time). */
const META_V1_LENGTH = 12;

/**
 * The meta record: `"SNID" | current signed prekey id u32 | next one-time prekey id u32 | signed prekey created at
 * (ms since the epoch) u32 high | u32 low`. A record of the first layout (12 bytes, no creation time) still loads.
 */
interface Meta {
  currentSignedPrekeyId: number;
  nextOneTimePrekeyId: number;
  /** When the current signed prekey was made (ms since the epoch): `SendingClient` rotates it by age. */
  signedPrekeyCreatedAt: number;
}

function corrupt(where: string, what: string) {
  return (message: string) => new IdentityError("CorruptStorage", `${where}: ${what}: ${message}`);
}

function encodeMeta(meta: Meta): Uint8Array {
  const at = meta.signedPrekeyCreatedAt;
  return new ByteWriter()
    .bytes(META_MAGIC)
    .u32(meta.currentSignedPrekeyId)
    .u32(meta.nextOneTimePrekeyId)
    .u64(at)
    .finish();
}

/**
 * The meta record, in either layout. A first-layout record has no creation time: `loadedAt` stands for it (the
 * signed prekey is then rotated one interval after this load), and `upgraded` says the record must be rewritten.
 */
function decodeMeta(bytes: Uint8Array, loadedAt: number): { meta: Meta; upgraded: boolean } {
  const r = new ByteReader(bytes, "ClientIdentity.open", corrupt("ClientIdentity.open", "meta record"));
  const magic = r.bytes(4, "magic");
  const currentSignedPrekeyId = r.u32("signed prekey id");
  const nextOneTimePrekeyId = r.u32("next one-time id");
  const upgraded = bytes.length === META_V1_LENGTH;
  const signedPrekeyCreatedAt = upgraded ? loadedAt : r.u64("created at");
  r.end();
  if (magic.some((b, i) => b !== META_MAGIC[i])) {
    throw new IdentityError("CorruptStorage", "ClientIdentity.open: expected the meta record to start with 'SNID'");
  }
  return { meta: { currentSignedPrekeyId, nextOneTimePrekeyId, signedPrekeyCreatedAt }, upgraded };
}

/** `now()` checked: a clock that gives anything but a time in [0, 2^53) would corrupt the meta record. */
function timeOf(now: () => number, where: string): number {
  const at = now();
  if (!Number.isSafeInteger(at) || at < 0) {
    throw new IdentityError("InvalidArgument", `${where}: expected the clock to give ms since the epoch, got ${at}`);
  }
  return at;
}

function encodeSignedPrekey(spk: SignedPrekey): Uint8Array {
  return new ByteWriter().u32(spk.id).bytes(spk.keyPair.secretKey).bytes(spk.signature).finish();
}

function decodeSignedPrekey(bytes: Uint8Array, where: string): SignedPrekey {
  const r = new ByteReader(bytes, where, corrupt(where, "signed prekey record"));
  const id = r.u32("id");
  const secretKey = r.bytes(KEY_LENGTH, "secret key");
  const signature = r.bytes(SIGNATURE_LENGTH, "signature");
  r.end();
  return { id, keyPair: { secretKey, publicKey: x25519PublicKey(secretKey) }, signature };
}

function encodeOneTimePrekey(opk: OneTimePrekey): Uint8Array {
  return new ByteWriter().u32(opk.id).bytes(opk.keyPair.secretKey).finish();
}

function decodeOneTimePrekey(bytes: Uint8Array, where: string): OneTimePrekey {
  const r = new ByteReader(bytes, where, corrupt(where, "one-time prekey record"));
  const id = r.u32("id");
  const secretKey = r.bytes(KEY_LENGTH, "secret key");
  r.end();
  return { id, keyPair: { secretKey, publicKey: x25519PublicKey(secretKey) } };
}

/**
 * A user's messaging identity on one client: the wallet-derived keys, the random identity key pair and the prekeys,
 * loaded from (or created in) an encrypted store. Every change is written to storage before the method resolves.
 */
export class ClientIdentity {
  readonly #keys: WalletKeys;
  readonly #identity: IdentityKeyPair;
  readonly #signed = new Map<number, SignedPrekey>();
  readonly #oneTime = new Map<number, OneTimePrekey>();
  #meta: Meta;
  /** The tail of the queue of storage-changing calls: they run one at a time, in call order. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    /** The wallet address (checksummed). */
    readonly address: string,
    /** The chain id and DID registry this identity is bound to. */
    readonly domain: IdentityDomain,
    /** The encrypted records of this identity. */
    readonly store: EncryptedStore,
    keys: WalletKeys,
    identity: IdentityKeyPair,
    meta: Meta,
    private readonly randomBytes: RandomBytes,
    private readonly now: () => number,
  ) {
    this.#keys = keys;
    this.#identity = identity;
    this.#meta = meta;
  }

  /**
   * Opens the identity of `options.signer`'s wallet in `options.storage`: asks the wallet for its signature, derives
   * the wallet keys, and loads the stored identity, or creates one (identity keys, signed prekey 1, one-time
   * prekeys) when the storage has none. Throws IdentityError: "WalletSignatureInvalid", "WalletMismatch" (the store
   * holds this account's identity under another key), "CorruptStorage".
   */
  static async open(options: OpenIdentityOptions): Promise<ClientIdentity> {
    const domain = { chainId: BigInt(options.chainId), didRegistry: getAddress(options.didRegistry) };
    const random = options.randomBytes ?? defaultRandomBytes;
    const now = options.now ?? Date.now;
    const { account, keys } = await deriveWalletKeys(options.signer, domain);
    const store = new EncryptedStore(options.storage, keys.storageKey, account, options.randomBytes);
    let metaBytes: Uint8Array | undefined;
    try {
      metaBytes = await store.get(META);
    } catch (error) {
      if (error instanceof IdentityError && error.code === "CorruptStorage") {
        throw new IdentityError(
          "WalletMismatch",
          `ClientIdentity.open: expected the stored identity of ${account} to open with this wallet's key; ` +
            "it was written under another key (another wallet signature, or a non-deterministic signer)",
        );
      }
      throw error;
    }
    if (metaBytes === undefined) return ClientIdentity.#create(account, domain, store, keys, options, random, now);

    const where = "ClientIdentity.open";
    const { meta, upgraded } = decodeMeta(metaBytes, timeOf(now, where));
    const identityBytes = await store.get(IDENTITY);
    if (identityBytes === undefined) {
      throw new IdentityError("CorruptStorage", `${where}: expected an identity record beside the meta record`);
    }
    const r = new ByteReader(identityBytes, where, corrupt(where, "identity record"));
    const identity = identityKeyPairFromSecrets(r.bytes(KEY_LENGTH, "X25519 secret"), r.bytes(KEY_LENGTH, "Ed25519"));
    r.end();
    const client = new ClientIdentity(account, domain, store, keys, identity, meta, random, now);
    for (const name of await store.list(SIGNED_PREFIX)) {
      const spk = decodeSignedPrekey((await store.get(name)) as Uint8Array, where);
      client.#signed.set(spk.id, spk);
    }
    for (const name of await store.list(ONE_TIME_PREFIX)) {
      const opk = decodeOneTimePrekey((await store.get(name)) as Uint8Array, where);
      client.#oneTime.set(opk.id, opk);
    }
    if (!client.#signed.has(meta.currentSignedPrekeyId)) {
      throw new IdentityError("CorruptStorage", `${where}: expected signed prekey ${meta.currentSignedPrekeyId}`);
    }
    // The first layout is written in the new one at once: the load time stands for the creation time from now on, so
    // restarts do not keep pushing the rotation back.
    if (upgraded) await store.put(META, encodeMeta(meta));
    return client;
  }

  static async #create(
    account: string,
    domain: IdentityDomain,
    store: EncryptedStore,
    keys: WalletKeys,
    options: OpenIdentityOptions,
    random: RandomBytes,
    now: () => number,
  ): Promise<ClientIdentity> {
    const identity = generateIdentityKeyPair(random);
    const signedPrekeyCreatedAt = timeOf(now, "ClientIdentity.open");
    const meta: Meta = { currentSignedPrekeyId: 1, nextOneTimePrekeyId: 1, signedPrekeyCreatedAt };
    const client = new ClientIdentity(account, domain, store, keys, identity, meta, random, now);
    const spk = generateSignedPrekey(identity, 1, random);
    client.#signed.set(spk.id, spk);
    await store.put(IDENTITY, concatBytes(identity.dh.secretKey, identity.signing.secretKey));
    await store.put(idName(SIGNED_PREFIX, spk.id), encodeSignedPrekey(spk));
    await client.addOneTimePrekeys(options.oneTimePrekeys ?? DEFAULT_ONE_TIME_PREKEYS);
    // The meta record goes last: a crash before it leaves a store that `open` treats as empty and recreates.
    await store.put(META, encodeMeta(client.#meta));
    return client;
  }

  /** The identity key pair (X25519 + Ed25519). Secrets: do not send anywhere. */
  get identityKeyPair(): IdentityKeyPair {
    return this.#identity;
  }

  /** The public identity (X25519 and Ed25519 keys), as published in the DID document. */
  get publicIdentity(): IdentityPublicKey {
    return identityPublicKey(this.#identity);
  }

  /** The current signed prekey (with its secret). */
  get signedPrekey(): SignedPrekey {
    return this.#signed.get(this.#meta.currentSignedPrekeyId) as SignedPrekey;
  }

  /**
   * When the current signed prekey was made (ms since the epoch, by the `now` clock); for an identity stored before
   * this was recorded, when it was first loaded since.
   */
  get signedPrekeyCreatedAt(): number {
    return this.#meta.signedPrekeyCreatedAt;
  }

  /** The ids of the signed prekeys held (the current one and those kept for the grace period), ascending. */
  get signedPrekeyIds(): number[] {
    return [...this.#signed.keys()].sort((a, b) => a - b);
  }

  /** The bill key (Baby Jubjub public key) derived from the wallet; its Poseidon hash is the identity tree leaf. */
  get billKey(): BabyJubjubPoint {
    return billKeyOf(this.#keys.billSecret);
  }

  /** A copy of the 32-byte bill private key, for signing delivery bills (sdk/bill/bill.ts `signBill`). */
  billPrivateKey(): Uint8Array {
    return this.#keys.billSecret.slice();
  }

  /** A copy of the 32-byte backup key (sdk/client/backup.ts). */
  backupKey(): Uint8Array {
    return this.#keys.backupKey.slice();
  }

  /** The ids of the one-time prekeys not yet used, ascending. */
  get oneTimePrekeyIds(): number[] {
    return [...this.#oneTime.keys()].sort((a, b) => a - b);
  }

  /** The public one-time prekeys (id and X25519 key), to hand to home nodes. */
  oneTimePrekeyPublics(): { id: number; publicKey: Uint8Array }[] {
    return this.oneTimePrekeyIds.map((id) => ({ id, publicKey: this.#oneTime.get(id)!.keyPair.publicKey.slice() }));
  }

  /** This identity's own prekey bundle, with one-time prekey `oneTimePrekeyId` when given and held. */
  prekeyBundle(oneTimePrekeyId?: number): PrekeyBundle {
    const opk = oneTimePrekeyId === undefined ? undefined : this.#oneTime.get(oneTimePrekeyId);
    if (oneTimePrekeyId !== undefined && opk === undefined) {
      throw new IdentityError(
        "InvalidArgument",
        `prekeyBundle: expected a held one-time prekey, got ${oneTimePrekeyId}`,
      );
    }
    return prekeyBundle(this.#identity, this.signedPrekey, opk);
  }

  /** Runs `task` after every storage-changing call made before it, so `meta` and the maps never interleave. */
  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Draws `count` new one-time prekeys (ids continue from the last) and stores them. */
  async addOneTimePrekeys(count: number = DEFAULT_ONE_TIME_PREKEYS): Promise<OneTimePrekey[]> {
    return this.#exclusive(() => this.#addOneTimePrekeys(count));
  }

  async #addOneTimePrekeys(count: number): Promise<OneTimePrekey[]> {
    if (!Number.isInteger(count) || count < 0 || count > 1000) {
      throw new IdentityError("InvalidArgument", `addOneTimePrekeys: expected a count in [0, 1000], got ${count}`);
    }
    const fresh = generateOneTimePrekeys(this.#meta.nextOneTimePrekeyId, count, this.randomBytes);
    for (const opk of fresh) {
      await this.store.put(idName(ONE_TIME_PREFIX, opk.id), encodeOneTimePrekey(opk));
      this.#oneTime.set(opk.id, opk);
    }
    this.#meta = { ...this.#meta, nextOneTimePrekeyId: this.#meta.nextOneTimePrekeyId + count };
    await this.store.put(META, encodeMeta(this.#meta));
    return fresh;
  }

  /**
   * Draws a new signed prekey (id + 1), makes it current (stamped with the `now` clock), and keeps
   * PREVIOUS_SIGNED_PREKEYS_KEPT older ones so initial messages already sent to them still open; older ones are
   * deleted. Publish it with `DidClient.publishSignedPrekey` (or rotate and publish with `DidClient.rotateSignedPrekey`).
   */
  async rotateSignedPrekey(): Promise<SignedPrekey> {
    return this.#exclusive(() => this.#rotateSignedPrekey());
  }

  async #rotateSignedPrekey(): Promise<SignedPrekey> {
    const id = this.#meta.currentSignedPrekeyId + 1;
    const signedPrekeyCreatedAt = timeOf(this.now, "rotateSignedPrekey");
    const spk = generateSignedPrekey(this.#identity, id, this.randomBytes);
    await this.store.put(idName(SIGNED_PREFIX, id), encodeSignedPrekey(spk));
    this.#signed.set(id, spk);
    this.#meta = { ...this.#meta, currentSignedPrekeyId: id, signedPrekeyCreatedAt };
    await this.store.put(META, encodeMeta(this.#meta));
    for (const old of [...this.#signed.keys()]) {
      if (old <= id - 1 - PREVIOUS_SIGNED_PREKEYS_KEPT) {
        await this.store.delete(idName(SIGNED_PREFIX, old));
        wipe(this.#signed.get(old)?.keyPair.secretKey);
        this.#signed.delete(old);
      }
    }
    // The base keys noted under a signed prekey go with it (a replay to it now fails as MissingPrekey), and so does
    // any record a stop between the two deletes left behind.
    for (const name of await this.store.list(USED_BASE_KEYS_PREFIX)) {
      if (!this.#signed.has(Number.parseInt(name.slice(USED_BASE_KEYS_PREFIX.length), 16))) {
        await this.store.delete(name);
      }
    }
    return spk;
  }

  /** The signed-prekey signature message of the current signed prekey (docs/CRYPTO.md). */
  signedPrekeyMessage(): Uint8Array {
    const spk = this.signedPrekey;
    return signedPrekeyMessage(this.#identity.dh.publicKey, spk.id, spk.keyPair.publicKey);
  }

  /** Opens a session to the owner of `bundle` (check it first: `DidClient.prekeyBundleOf`), sending `plaintext`. */
  initiateSession(bundle: PrekeyBundle, plaintext: Uint8Array, options: RatchetOptions = {}): InitiatedSession {
    return initiateSession(this.#identity, bundle, plaintext, options);
  }

  /**
   * Accepts an initial message (X3DH header || first ratchet message) sent to this identity: `openSession`, then its
   * `commit` at once. Throws X3dhError (among them "Replayed") or RatchetError.
   */
  async acceptSession(message: Uint8Array, options: RatchetOptions = {}): Promise<AcceptedSession> {
    const opened = await this.openSession(message, options);
    await opened.commit();
    return opened;
  }

  /**
   * Opens an initial message (X3DH header || first ratchet message) sent to this identity, and changes nothing: the
   * caller checks who sent it (the sender's DID must name `peerIdentity`), keeps the session, and then calls `commit`,
   * which deletes the one-time prekey it used and, without one, notes its base key (EK_A) so the same message is
   * refused if it comes again (X3DH §4.2: it could be replayed). Nothing is noted for a message that fails to decrypt
   * (a tampered copy) or whose sender is never checked, so neither burns a prekey nor fills the record. A base key
   * already noted under the same signed prekey is refused before any DH: X3dhError("Replayed"). Throws X3dhError or
   * RatchetError.
   */
  async openSession(message: Uint8Array, options: RatchetOptions = {}): Promise<OpenedSession> {
    return this.#exclusive(async () => {
      const header =
        message.length >= X3DH_HEADER_LENGTH ? decodeX3dhHeader(message.subarray(0, X3DH_HEADER_LENGTH)) : undefined;
      if (header !== undefined && header.oneTimePrekeyId === undefined) await this.#refuseUsedBaseKey(header);
      const removed: number[] = [];
      const store: PrekeyStore = {
        signedPrekey: (id) => this.#signed.get(id),
        oneTimePrekey: (id) => this.#oneTime.get(id),
        removeOneTimePrekey: (id) => {
          removed.push(id);
        },
      };
      const accepted = acceptSession(this.#identity, store, message, options);
      let committed = false;
      const commit = () =>
        this.#exclusive(async () => {
          if (committed) return;
          committed = true;
          for (const id of removed) {
            await this.store.delete(idName(ONE_TIME_PREFIX, id));
            wipe(this.#oneTime.get(id)?.keyPair.secretKey);
            this.#oneTime.delete(id);
          }
          if (header !== undefined && removed.length === 0) {
            const used = await this.#refuseUsedBaseKey(header);
            const kept = [...used, header.ephemeralKey].slice(-MAX_USED_BASE_KEYS);
            await this.store.put(idName(USED_BASE_KEYS_PREFIX, header.signedPrekeyId), concatBytes(...kept));
          }
        });
      return { ...accepted, commit };
    });
  }

  /**
   * The base keys already noted under the header's signed prekey (USED_BASE_KEYS_PREFIX); throws X3dhError
   * ("Replayed") if the header's EK_A is among them. A record that is not a whole number of keys (damaged) reads as
   * empty, and the next note replaces it.
   */
  async #refuseUsedBaseKey(header: X3dhHeader): Promise<Uint8Array[]> {
    const record = await this.store.get(idName(USED_BASE_KEYS_PREFIX, header.signedPrekeyId));
    const used =
      record === undefined || record.length % 32 !== 0
        ? []
        : Array.from({ length: record.length / 32 }, (_, i) => record.slice(32 * i, 32 * i + 32));
    if (used.some((key) => bytesEqual(key, header.ephemeralKey))) {
      throw new X3dhError(
        "Replayed",
        `ClientIdentity.openSession: expected a new base key for signed prekey ${header.signedPrekeyId}, got one ` +
          `already accepted`,
      );
    }
    return used;
  }

  /**
   * Stores `session`'s state as the session with `peer` (a wallet address), encrypted, **replacing** the previous
   * snapshot: an old snapshot would keep exactly the keys the live session erased (docs/CRYPTO.md). Call it after
   * every encrypt and decrypt whose result the app keeps.
   */
  async saveSession(peer: string, session: RatchetSession): Promise<void> {
    const name = sessionName(peer);
    const state = session.serialize();
    try {
      await this.#exclusive(() => this.store.put(name, state));
    } finally {
      wipe(state);
    }
  }

  /**
   * The stored session with `peer`, or undefined. Throws IdentityError("CorruptStorage") if it does not open, and
   * MalformedRatchetDataError if it does not parse.
   */
  async loadSession(peer: string, options: RatchetOptions = {}): Promise<RatchetSession | undefined> {
    const state = await this.store.get(sessionName(peer));
    if (state === undefined) return undefined;
    try {
      return RatchetSession.deserialize(state, options);
    } finally {
      wipe(state);
    }
  }

  /** Forgets the session with `peer`. */
  async deleteSession(peer: string): Promise<void> {
    const name = sessionName(peer);
    await this.#exclusive(() => this.store.delete(name));
  }
}

function sessionName(peer: string): string {
  let address: string;
  try {
    address = getAddress(peer);
  } catch {
    throw new IdentityError("InvalidArgument", `sessionName: expected the peer as an address, got ${String(peer)}`);
  }
  return SESSION_PREFIX + address.toLowerCase();
}
