import { checkStorageKey, checkStoragePrefix, checkStorageValue, type StorageAdapter } from "./adapter";

/**
 * A StorageAdapter in memory: for tests, and for apps that keep nothing between runs. Values are copied in and out,
 * so a caller mutating its buffer cannot change what is stored.
 */
export class MemoryStorage implements StorageAdapter {
  readonly #values = new Map<string, Uint8Array>();

  /** @inheritdoc */
  async get(key: string): Promise<Uint8Array | undefined> {
    checkStorageKey(key, "MemoryStorage.get");
    return this.#values.get(key)?.slice();
  }

  /** @inheritdoc */
  async put(key: string, value: Uint8Array): Promise<void> {
    checkStorageKey(key, "MemoryStorage.put");
    this.#values.set(key, checkStorageValue(value, "MemoryStorage.put").slice());
  }

  /** @inheritdoc */
  async delete(key: string): Promise<void> {
    checkStorageKey(key, "MemoryStorage.delete");
    this.#values.delete(key);
  }

  /** @inheritdoc */
  async list(prefix: string): Promise<string[]> {
    checkStoragePrefix(prefix, "MemoryStorage.list");
    return [...this.#values.keys()].filter((key) => key.startsWith(prefix)).sort();
  }
}
