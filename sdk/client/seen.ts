/**
 * The message ids a client has already processed, kept in its encrypted store so that they survive a restart.
 *
 * A message reaches a client once per home node (replicas share one id), and a replica may come late: from a node
 * that was down, or after the client restarted. A replica whose id is known is acknowledged and dropped, never
 * decrypted or shown again.
 *
 * The ids live in records of SEEN_IDS_PER_RECORD ids each, `net/seen/<record number, 8 hex>` = the 16-byte ids one
 * after the other, oldest first. New ids go into the newest record; when it is full a new one starts, and once there
 * are SEEN_IDS_KEPT / SEEN_IDS_PER_RECORD records the oldest is deleted with its ids, so between
 * SEEN_IDS_KEPT - SEEN_IDS_PER_RECORD and SEEN_IDS_KEPT ids are remembered, and a write rewrites one small record,
 * never the whole set.
 */
import { getBytes } from "ethers";
import { toHex } from "../crypto/bytes";
import { IdentityError, type EncryptedStore } from "./identity";

/** Message ids remembered for deduplication: replicas arrive within seconds or days; 10,000 ids are 160 KB. */
export const SEEN_IDS_KEPT = 10_000;
/** Ids per stored record: 8 KB to rewrite after a batch, 20 records in all. Divides SEEN_IDS_KEPT. */
export const SEEN_IDS_PER_RECORD = 500;
/** Bytes of a message id. */
const MESSAGE_ID_LENGTH = 16;
/** Storage prefix of the seen-id records (under the client's namespace). */
const SEEN_PREFIX = "net/seen/";

/** The part of the encrypted store the seen ids use. */
export type SeenIdsStore = Pick<EncryptedStore, "get" | "put" | "delete" | "list">;

interface SeenRecord {
  readonly number: number;
  readonly ids: string[];
}

/** The ids of processed messages: a bounded set, oldest dropped first, written through to the encrypted store. */
export class SeenIds {
  readonly #store: SeenIdsStore;
  readonly #ids = new Set<string>();
  /** The records, oldest first; only the last one takes new ids. */
  readonly #records: SeenRecord[] = [];
  /** Records changed since the last `flush`, and records to delete. */
  readonly #dirty = new Set<SeenRecord>();
  readonly #dropped: number[] = [];

  private constructor(store: SeenIdsStore) {
    this.#store = store;
  }

  /**
   * Loads the stored ids. A record that does not open or parse (IdentityError "CorruptStorage") is deleted and passed
   * to `onError`: its ids are forgotten, so at worst a late replica of one of them fails to decrypt and is reported.
   * Throws the storage's errors otherwise (a record that could not be read is kept: it may read next time).
   */
  static async load(store: SeenIdsStore, onError: (error: Error) => void = () => undefined): Promise<SeenIds> {
    const seen = new SeenIds(store);
    for (const name of await store.list(SEEN_PREFIX)) {
      const number = Number.parseInt(name.slice(SEEN_PREFIX.length), 16);
      try {
        const bytes = await store.get(name);
        if (bytes === undefined) continue;
        if (!/^[0-9a-f]{8}$/.test(name.slice(SEEN_PREFIX.length)) || bytes.length % MESSAGE_ID_LENGTH !== 0) {
          throw new IdentityError("CorruptStorage", `SeenIds.load: expected a record of 16-byte ids at '${name}'`);
        }
        const ids: string[] = [];
        for (let i = 0; i < bytes.length; i += MESSAGE_ID_LENGTH) {
          ids.push(toHex(bytes.subarray(i, i + MESSAGE_ID_LENGTH)));
        }
        seen.#records.push({ number, ids });
        for (const id of ids) seen.#ids.add(id);
      } catch (error) {
        // Only a record that is really broken goes: a storage that failed for a moment must not cost the ids.
        if (!(error instanceof IdentityError) || error.code !== "CorruptStorage") throw error;
        onError(error);
        await store.delete(name);
      }
    }
    return seen;
  }

  /** Ids remembered now. */
  get size(): number {
    return this.#ids.size;
  }

  /** Whether `id` (hex of a 16-byte message id) was processed. */
  has(id: string): boolean {
    return this.#ids.has(id);
  }

  /**
   * Remembers `id` (hex of a 16-byte message id) in memory; `flush` stores it. Throws IdentityError
   * ("InvalidArgument") for anything else.
   */
  add(id: string): void {
    if (!/^[0-9a-f]{32}$/.test(id)) {
      throw new IdentityError("InvalidArgument", `SeenIds.add: expected 32 lower-case hex digits, got ${id}`);
    }
    if (this.#ids.has(id)) return;
    let last = this.#records.at(-1);
    if (last === undefined || last.ids.length >= SEEN_IDS_PER_RECORD) {
      if (this.#records.length >= SEEN_IDS_KEPT / SEEN_IDS_PER_RECORD) this.#dropOldest();
      last = { number: (last?.number ?? -1) + 1, ids: [] };
      this.#records.push(last);
    }
    last.ids.push(id);
    this.#ids.add(id);
    this.#dirty.add(last);
  }

  /** Writes the records changed since the last call and deletes dropped ones. Throws the storage's errors. */
  async flush(): Promise<void> {
    for (const record of [...this.#dirty]) {
      const bytes = new Uint8Array(record.ids.length * MESSAGE_ID_LENGTH);
      record.ids.forEach((id, i) => bytes.set(getBytes(`0x${id}`), i * MESSAGE_ID_LENGTH));
      await this.#store.put(recordName(record.number), bytes);
      this.#dirty.delete(record);
    }
    while (this.#dropped.length > 0) {
      await this.#store.delete(recordName(this.#dropped[0]));
      this.#dropped.shift();
    }
  }

  #dropOldest(): void {
    const oldest = this.#records.shift()!;
    for (const id of oldest.ids) this.#ids.delete(id);
    this.#dirty.delete(oldest);
    this.#dropped.push(oldest.number);
  }
}

function recordName(number: number): string {
  return SEEN_PREFIX + number.toString(16).padStart(8, "0");
}
