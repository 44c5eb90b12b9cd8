/**
 * The portable backup: a user's contacts and history as one encrypted blob under the wallet-derived backup key
 * (sdk/client/identity.ts), so another app with the same wallet restores them. The blob is stored wherever the DID's
 * backup pointer says (edge nodes, later); `backupPointer` names it by its hash.
 *
 * Blob, version 1:
 *
 *   offset size  field
 *        0    4  magic "SNBK"
 *        4    1  version 0x01
 *        5   20  the wallet address
 *       25   12  nonce (random)
 *       37    …  ChaCha20-Poly1305(backupKey, nonce, aad = bytes 0..25) of the UTF-8 JSON contents, then the tag
 *
 * The associated data binds the magic, the version and the wallet address: a blob relabelled with another address
 * does not open. A blob of another wallet is refused before decryption ("WrongWallet"); any altered byte fails the
 * tag ("Tampered"). The contents are parsed strictly after decryption.
 */
import { getAddress } from "ethers";
import { sha256 } from "@noble/hashes/sha2.js";
import { ByteReader, bytesEqual, concatBytes, toHex } from "../crypto/bytes";
import { NONCE_LENGTH, TAG_LENGTH, aeadOpen, aeadSeal, randomNonce, type RandomBytes } from "../crypto/primitives";

/** Version byte of the blob; a new layout or contents schema takes a new version. */
export const BACKUP_VERSION = 1;
/** Largest blob `openBackup` parses (16 MiB): bounds the work an untrusted blob costs. */
export const MAX_BACKUP_BYTES = 16 * 1024 * 1024;
/** Length of the clear header (magic, version, address), which is also the associated data. */
export const BACKUP_HEADER_LENGTH = 4 + 1 + 20;

const MAGIC = new TextEncoder().encode("SNBK");

/** What went wrong with a backup blob. */
export type BackupErrorCode =
  /** The blob belongs to another wallet. */
  | "WrongWallet"
  /** The tag does not verify: the blob was altered, or sealed under another key. */
  | "Tampered"
  /** The blob or its contents do not parse. */
  | "Malformed"
  /** The blob has a version this SDK does not read. */
  | "UnsupportedVersion";

/** The typed error of this module; `code` says which check failed. */
export class BackupError extends Error {
  /**
   * @param code which check failed
   * @param message names the function and what it expected
   */
  constructor(
    readonly code: BackupErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "BackupError";
  }
}

/** A contact: another user, by wallet address. */
export interface Contact {
  /** The contact's wallet address (checksummed). */
  readonly address: string;
  /** The name the user gave the contact. */
  readonly name?: string;
  /** The contact's X25519 identity key (hex) as last verified, to notice a change. */
  readonly identityKey?: string;
  /** Unix milliseconds when added. */
  readonly addedAt: number;
}

/** One message of the history, in plaintext. */
export interface HistoryEntry {
  /** The other party's wallet address (checksummed). */
  readonly peer: string;
  /** Whether the user sent or received it. */
  readonly direction: "sent" | "received";
  /** Unix milliseconds. */
  readonly timestamp: number;
  /** The message text. */
  readonly text: string;
}

/** What a backup holds. */
export interface BackupContents {
  /** The user's contacts. */
  readonly contacts: readonly Contact[];
  /** The user's message history. */
  readonly history: readonly HistoryEntry[];
}

/** The wallet a backup is sealed for: its address and its backup key (`ClientIdentity` has both). */
export interface BackupOwner {
  /** The wallet address. */
  readonly address: string;
  /** A copy of the 32-byte wallet-derived backup key. */
  backupKey(): Uint8Array;
}

function addressBytes(address: string): Uint8Array {
  return Uint8Array.from(Buffer.from(getAddress(address).slice(2), "hex"));
}

/** Seals `contents` for `owner`: the blob of the module comment. */
export function sealBackup(owner: BackupOwner, contents: BackupContents, randomBytes?: RandomBytes): Uint8Array {
  const checked = parseContents(JSON.parse(JSON.stringify(contents)) as unknown, "sealBackup");
  const plaintext = new TextEncoder().encode(JSON.stringify({ v: BACKUP_VERSION, ...checked }));
  const header = concatBytes(MAGIC, Uint8Array.of(BACKUP_VERSION), addressBytes(owner.address));
  const nonce = randomNonce(NONCE_LENGTH, randomBytes);
  const blob = new Uint8Array(BACKUP_HEADER_LENGTH + NONCE_LENGTH + plaintext.length + TAG_LENGTH);
  blob.set(header);
  blob.set(nonce, BACKUP_HEADER_LENGTH);
  const key = owner.backupKey();
  try {
    aeadSeal(key, nonce, header, plaintext, blob.subarray(BACKUP_HEADER_LENGTH + NONCE_LENGTH));
  } finally {
    key.fill(0);
  }
  return blob;
}

/**
 * Opens a blob sealed by `sealBackup` for the same wallet. Throws BackupError: "WrongWallet", "Tampered",
 * "Malformed", "UnsupportedVersion".
 */
export function openBackup(owner: BackupOwner, blob: Uint8Array): BackupContents {
  const where = "openBackup";
  if (!(blob instanceof Uint8Array) || blob.length > MAX_BACKUP_BYTES) {
    throw new BackupError("Malformed", `${where}: expected a Uint8Array of at most ${MAX_BACKUP_BYTES} bytes`);
  }
  const r = new ByteReader(blob, where, (m) => new BackupError("Malformed", m));
  const magic = r.bytes(4, "magic");
  if (!bytesEqual(magic, MAGIC)) throw new BackupError("Malformed", `${where}: expected the magic 'SNBK'`);
  const version = r.u8("version");
  if (version !== BACKUP_VERSION) {
    throw new BackupError("UnsupportedVersion", `${where}: expected version ${BACKUP_VERSION}, got ${version}`);
  }
  const address = r.bytes(20, "address");
  if (!bytesEqual(address, addressBytes(owner.address))) {
    throw new BackupError(
      "WrongWallet",
      `${where}: expected a backup of ${getAddress(owner.address)}, got one of ${getAddress("0x" + toHex(address))}`,
    );
  }
  const nonce = r.bytes(NONCE_LENGTH, "nonce");
  if (r.remaining < TAG_LENGTH) throw new BackupError("Malformed", `${where}: expected a ciphertext with its tag`);
  const key = owner.backupKey();
  let plaintext: Uint8Array | undefined;
  try {
    plaintext = aeadOpen(
      key,
      nonce,
      blob.subarray(0, BACKUP_HEADER_LENGTH),
      blob.subarray(BACKUP_HEADER_LENGTH + NONCE_LENGTH),
    );
  } finally {
    key.fill(0);
  }
  if (plaintext === undefined) {
    throw new BackupError("Tampered", `${where}: expected the backup's tag to verify under this wallet's backup key`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plaintext));
  } catch (error) {
    throw new BackupError("Malformed", `${where}: expected UTF-8 JSON contents, ${(error as Error).message}`);
  }
  if (typeof json !== "object" || json === null || (json as { v?: unknown }).v !== BACKUP_VERSION) {
    throw new BackupError("Malformed", `${where}: expected contents of version ${BACKUP_VERSION}`);
  }
  return parseContents(json, where);
}

/** The pointer a DID stores for `blob`: "sha256:" and the blob's SHA-256 in hex (71 bytes, below the 256 limit). */
export function backupPointer(blob: Uint8Array): string {
  return "sha256:" + toHex(sha256(blob));
}

function fail(where: string, what: string): never {
  throw new BackupError("Malformed", `${where}: expected ${what}`);
}

function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function checkedAddress(value: unknown, where: string, what: string): string {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(value)) fail(where, `${what} as an address`);
  return getAddress(value.toLowerCase());
}

function parseContents(json: unknown, where: string): BackupContents {
  const o = json as { contacts?: unknown; history?: unknown };
  if (!Array.isArray(o.contacts) || !Array.isArray(o.history)) fail(where, "contacts and history arrays");
  const contacts = o.contacts.map((c: unknown, i: number): Contact => {
    const x = (c ?? {}) as Record<string, unknown>;
    if (x.name !== undefined && typeof x.name !== "string") fail(where, `contacts[${i}].name as a string`);
    if (x.identityKey !== undefined && (typeof x.identityKey !== "string" || !/^[0-9a-f]{64}$/.test(x.identityKey))) {
      fail(where, `contacts[${i}].identityKey as 64 lower-case hex digits`);
    }
    if (!isTime(x.addedAt)) fail(where, `contacts[${i}].addedAt as a non-negative integer`);
    return {
      address: checkedAddress(x.address, where, `contacts[${i}].address`),
      ...(x.name !== undefined ? { name: x.name as string } : {}),
      ...(x.identityKey !== undefined ? { identityKey: x.identityKey as string } : {}),
      addedAt: x.addedAt,
    };
  });
  const history = o.history.map((h: unknown, i: number): HistoryEntry => {
    const x = (h ?? {}) as Record<string, unknown>;
    if (x.direction !== "sent" && x.direction !== "received") fail(where, `history[${i}].direction sent|received`);
    if (!isTime(x.timestamp)) fail(where, `history[${i}].timestamp as a non-negative integer`);
    if (typeof x.text !== "string") fail(where, `history[${i}].text as a string`);
    return {
      peer: checkedAddress(x.peer, where, `history[${i}].peer`),
      direction: x.direction,
      timestamp: x.timestamp,
      text: x.text,
    };
  });
  return { contacts, history };
}
