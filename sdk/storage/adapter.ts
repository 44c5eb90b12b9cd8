/**
 * Where the SDK keeps its state: a small async key-value interface with byte values, so an app can plug in whatever
 * its platform has (IndexedDB, a file system, a mobile key store). Keys are UTF-8 strings of at most
 * `MAX_STORAGE_KEY_BYTES` bytes, made of printable ASCII; the SDK names its keys like paths ("identity/keys",
 * "prekeys/one-time/7"), and `list` finds them by prefix.
 *
 * Adapters store bytes as given. Secrets are encrypted before they reach an adapter (sdk/client/identity.ts,
 * `EncryptedStore`), so an adapter never needs to be trusted with them.
 */

/** Longest key, in bytes: a file name of 2 hex digits per byte plus a suffix stays below 255 bytes. */
export const MAX_STORAGE_KEY_BYTES = 120;

/** What went wrong in a storage adapter. */
export type StorageErrorCode =
  /** The key is empty, too long, or has a character outside printable ASCII. */
  | "InvalidKey"
  /** A value is not a Uint8Array. */
  | "InvalidValue"
  /** The underlying medium failed (I/O error, permissions). */
  | "Io";

/** The typed error of the storage adapters; `code` says which check failed. */
export class StorageError extends Error {
  /**
   * @param code which check failed
   * @param message names the function and what it expected
   * @param cause the underlying error, for "Io"
   */
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = "StorageError";
  }
}

/** An async key-value store of byte values. Every method validates its key and throws StorageError. */
export interface StorageAdapter {
  /** The value stored under `key` (a copy), or undefined. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores a copy of `value` under `key`, replacing any previous value; durable when the promise resolves. */
  put(key: string, value: Uint8Array): Promise<void>;
  /** Removes `key`; resolves whether or not it existed. */
  delete(key: string): Promise<void>;
  /** Every key that starts with `prefix` ("" for all), sorted. */
  list(prefix: string): Promise<string[]>;
}

const KEY_PATTERN = /^[\x20-\x7e]+$/;

/** Throws StorageError("InvalidKey") unless `key` is 1..MAX_STORAGE_KEY_BYTES printable ASCII characters. */
export function checkStorageKey(key: unknown, where: string): string {
  if (typeof key !== "string" || key.length === 0 || key.length > MAX_STORAGE_KEY_BYTES || !KEY_PATTERN.test(key)) {
    throw new StorageError(
      "InvalidKey",
      `${where}: expected a key of 1..${MAX_STORAGE_KEY_BYTES} printable ASCII characters, got ${JSON.stringify(key)}`,
    );
  }
  return key;
}

/** Throws StorageError("InvalidKey") unless `prefix` is "" or a valid key prefix. */
export function checkStoragePrefix(prefix: unknown, where: string): string {
  if (prefix === "") return prefix;
  return checkStorageKey(prefix, where);
}

/** Throws StorageError("InvalidValue") unless `value` is a Uint8Array. */
export function checkStorageValue(value: unknown, where: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new StorageError("InvalidValue", `${where}: expected the value as Uint8Array, got ${typeof value}`);
  }
  return value;
}
