/**
 * A StorageAdapter on the file system: one file per key in one directory.
 *
 * Names: a key's UTF-8 bytes in lower-case hex, plus ".v" (keys are printable ASCII of at most
 * MAX_STORAGE_KEY_BYTES bytes, so a name is at most 242 bytes); temporary files are ".tmp-" and 24 random hex
 * digits, whatever the key. Hex keeps any key safe as a file name on every file system (no "/", "..", case folding
 * or reserved names), and a byte prefix of a key is a hex prefix of its name, so `list` filters names without
 * decoding all of them.
 *
 * Writes are atomic: the value goes to a fresh temporary file in the same directory, which is flushed (fsync) and
 * then renamed over the key's file, and the directory is flushed. A crash at any point leaves either the old value
 * or the new one, never a mix; leftover temporary files are never read, and `open` removes them.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { StorageError, checkStorageKey, checkStoragePrefix, checkStorageValue, type StorageAdapter } from "./adapter";

const VALUE_SUFFIX = ".v";
const TEMP_PREFIX = ".tmp-";

/** Options of `FileStorage.open`. */
export interface FileStorageOptions {
  /**
   * Fault injection for tests: called after the temporary file is written and flushed, before it is renamed into
   * place. A hook that throws stands for a crash at that moment.
   */
  readonly beforeRename?: (tempPath: string) => void | Promise<void>;
}

function fileName(key: string): string {
  return Buffer.from(key, "utf8").toString("hex") + VALUE_SUFFIX;
}

function keyOf(name: string): string | undefined {
  if (!name.endsWith(VALUE_SUFFIX)) return undefined;
  const hex = name.slice(0, -VALUE_SUFFIX.length);
  if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-f]+$/.test(hex)) return undefined;
  return Buffer.from(hex, "hex").toString("utf8");
}

function io(where: string, error: unknown): StorageError {
  return new StorageError("Io", `${where}: ${(error as Error).message}`, error);
}

/** A StorageAdapter keeping one file per key in a directory, with atomic writes (see the module comment). */
export class FileStorage implements StorageAdapter {
  private constructor(
    /** The directory the values live in. */
    readonly directory: string,
    private readonly options: FileStorageOptions,
  ) {}

  /**
   * Opens (creating it if needed) the store in `directory`, and removes temporary files an interrupted write left.
   * Throws StorageError("Io").
   */
  static async open(directory: string, options: FileStorageOptions = {}): Promise<FileStorage> {
    try {
      await fs.mkdir(directory, { recursive: true, mode: 0o700 });
      for (const name of await fs.readdir(directory)) {
        if (name.startsWith(TEMP_PREFIX)) await fs.rm(path.join(directory, name), { force: true });
      }
    } catch (error) {
      throw io("FileStorage.open", error);
    }
    return new FileStorage(directory, options);
  }

  /** @inheritdoc */
  async get(key: string): Promise<Uint8Array | undefined> {
    const file = path.join(this.directory, fileName(checkStorageKey(key, "FileStorage.get")));
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw io("FileStorage.get", error);
    }
  }

  /** @inheritdoc */
  async put(key: string, value: Uint8Array): Promise<void> {
    const name = fileName(checkStorageKey(key, "FileStorage.put"));
    checkStorageValue(value, "FileStorage.put");
    const temp = path.join(this.directory, `${TEMP_PREFIX}${randomBytes(12).toString("hex")}`);
    try {
      const handle = await fs.open(temp, "wx", 0o600);
      try {
        await handle.writeFile(value);
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (this.options.beforeRename) await this.options.beforeRename(temp);
      await fs.rename(temp, path.join(this.directory, name));
      await this.#syncDirectory();
    } catch (error) {
      await fs.rm(temp, { force: true }).catch(() => undefined);
      throw error instanceof StorageError ? error : io("FileStorage.put", error);
    }
  }

  /** @inheritdoc */
  async delete(key: string): Promise<void> {
    const file = path.join(this.directory, fileName(checkStorageKey(key, "FileStorage.delete")));
    try {
      await fs.rm(file, { force: true });
      await this.#syncDirectory();
    } catch (error) {
      throw io("FileStorage.delete", error);
    }
  }

  /** @inheritdoc */
  async list(prefix: string): Promise<string[]> {
    const hexPrefix = Buffer.from(checkStoragePrefix(prefix, "FileStorage.list"), "utf8").toString("hex");
    let names: string[];
    try {
      names = await fs.readdir(this.directory);
    } catch (error) {
      throw io("FileStorage.list", error);
    }
    const keys: string[] = [];
    for (const name of names) {
      if (!name.startsWith(hexPrefix)) continue;
      const key = keyOf(name);
      if (key !== undefined) keys.push(key);
    }
    return keys.sort();
  }

  /** Flushes the directory entry after a rename or removal, so it survives a power loss (no-op where unsupported). */
  async #syncDirectory(): Promise<void> {
    let handle: FileHandle | undefined;
    try {
      handle = await fs.open(this.directory, "r");
      await handle.sync();
    } catch {
      // Some platforms (Windows) cannot open or fsync a directory; the rename is still atomic there.
    } finally {
      await handle?.close();
    }
  }
}
