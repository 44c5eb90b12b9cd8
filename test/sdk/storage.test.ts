import { expect } from "chai";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  FileStorage,
  MAX_STORAGE_KEY_BYTES,
  MemoryStorage,
  StorageError,
  type StorageAdapter,
} from "../../sdk/storage";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

async function expectStorageError(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(StorageError);
    expect((error as StorageError).code).to.equal(code);
    return;
  }
  expect.fail(`expected StorageError ${code}`);
}

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "sn-storage-"));
}

/** The behaviour every adapter shares. */
function adapterBehaviour(name: string, make: () => Promise<StorageAdapter>) {
  describe(`${name}: the StorageAdapter contract`, () => {
    it("returns undefined for a key never written, and what was put for one that was", async () => {
      const s = await make();
      expect(await s.get("a/b")).to.equal(undefined);
      await s.put("a/b", bytes("one"));
      expect(text(await s.get("a/b"))).to.equal("one");
    });

    it("replaces a value on put and forgets it on delete (deleting a missing key is fine)", async () => {
      const s = await make();
      await s.put("k", bytes("old"));
      await s.put("k", bytes("new"));
      expect(text(await s.get("k"))).to.equal("new");
      await s.delete("k");
      expect(await s.get("k")).to.equal(undefined);
      await s.delete("k");
    });

    it("stores an empty value as empty, not as missing", async () => {
      const s = await make();
      await s.put("empty", new Uint8Array(0));
      expect(await s.get("empty")).to.deep.equal(new Uint8Array(0));
    });

    it("copies values in and out, so callers cannot mutate what is stored", async () => {
      const s = await make();
      const value = bytes("abc");
      await s.put("k", value);
      value[0] = 0;
      const read = (await s.get("k"))!;
      read[1] = 0;
      expect(text(await s.get("k"))).to.equal("abc");
    });

    it("lists keys by prefix, sorted, and all keys for the empty prefix", async () => {
      const s = await make();
      for (const key of ["p/2", "p/1", "q/1", "p", "pp/1"]) await s.put(key, bytes(key));
      expect(await s.list("p/")).to.deep.equal(["p/1", "p/2"]);
      expect(await s.list("p")).to.deep.equal(["p", "p/1", "p/2", "pp/1"]);
      expect(await s.list("")).to.deep.equal(["p", "p/1", "p/2", "pp/1", "q/1"]);
      expect(await s.list("zz")).to.deep.equal([]);
    });

    it("takes keys with path-like and special characters without escaping the store", async () => {
      const s = await make();
      const keys = ["../../etc/passwd", "a\\b", "CON", "a:b*?<>|", " spaced ", "sha256:" + "f".repeat(64)];
      for (const key of keys) await s.put(key, bytes(key));
      for (const key of keys) expect(text(await s.get(key))).to.equal(key);
      expect(await s.list("")).to.deep.equal([...keys].sort());
    });

    it("refuses invalid keys and values with StorageError", async () => {
      const s = await make();
      await expectStorageError(s.get(""), "InvalidKey");
      await expectStorageError(s.put("x".repeat(MAX_STORAGE_KEY_BYTES + 1), bytes("v")), "InvalidKey");
      await expectStorageError(s.put("é", bytes("v")), "InvalidKey");
      await expectStorageError(s.put("new\nline", bytes("v")), "InvalidKey");
      await expectStorageError(s.put("k", "v" as unknown as Uint8Array), "InvalidValue");
      await s.put("x".repeat(MAX_STORAGE_KEY_BYTES), bytes("longest"));
      expect(text(await s.get("x".repeat(MAX_STORAGE_KEY_BYTES)))).to.equal("longest");
    });
  });
}

adapterBehaviour("MemoryStorage", async () => new MemoryStorage());
adapterBehaviour("FileStorage", async () => FileStorage.open(await tempDir()));

describe("FileStorage", () => {
  it("keeps values across reopening the directory", async () => {
    const dir = await tempDir();
    const first = await FileStorage.open(dir);
    await first.put("identity/keys", bytes("secret"));
    const second = await FileStorage.open(dir);
    expect(text(await second.get("identity/keys"))).to.equal("secret");
    expect(await second.list("")).to.deep.equal(["identity/keys"]);
  });

  it("names files by the hex of the key, inside the directory only", async () => {
    const dir = await tempDir();
    const s = await FileStorage.open(dir);
    await s.put("../x", bytes("v"));
    expect(await fs.readdir(dir)).to.deep.equal([Buffer.from("../x").toString("hex") + ".v"]);
  });

  it("a write interrupted before rename leaves the old value", async () => {
    const dir = await tempDir();
    const healthy = await FileStorage.open(dir);
    await healthy.put("k", bytes("old"));
    let tempSeen: string | undefined;
    const crashing = await FileStorage.open(dir, {
      beforeRename: async (temp) => {
        tempSeen = temp;
        // The new value is fully on disk in the temporary file, yet readers still see the old one.
        expect(text(new Uint8Array(await fs.readFile(temp)))).to.equal("new");
        expect(text(await healthy.get("k"))).to.equal("old");
        expect(await healthy.list("")).to.deep.equal(["k"]);
        throw new Error("power lost");
      },
    });
    await expectStorageError(crashing.put("k", bytes("new")), "Io");
    expect(tempSeen).to.be.a("string");
    expect(text(await healthy.get("k"))).to.equal("old");
  });

  it("ignores a temporary file left by a crash and removes it on open", async () => {
    const dir = await tempDir();
    const s = await FileStorage.open(dir);
    await s.put("k", bytes("old"));
    // What a process killed mid-write leaves: a partial temporary file beside the value.
    const leftover = path.join(dir, ".tmp-0123456789abcdef01234567");
    await fs.writeFile(leftover, bytes("ne"));
    expect(text(await s.get("k"))).to.equal("old");
    expect(await s.list("")).to.deep.equal(["k"]);
    const reopened = await FileStorage.open(dir);
    expect(text(await reopened.get("k"))).to.equal("old");
    expect(await fs.readdir(dir)).to.deep.equal([Buffer.from("k").toString("hex") + ".v"]);
  });

  it("keeps every key intact under concurrent writes", async () => {
    const s = await FileStorage.open(await tempDir());
    await Promise.all(Array.from({ length: 40 }, (_, i) => s.put(`k/${i % 8}`, bytes(`v${i}`))));
    const keys = await s.list("k/");
    expect(keys).to.have.length(8);
    for (const key of keys) expect(text(await s.get(key))).to.match(/^v\d+$/);
  });

  it("reports an unusable directory as StorageError Io", async () => {
    const dir = await tempDir();
    const file = path.join(dir, "not-a-dir");
    await fs.writeFile(file, "x");
    await expectStorageError(FileStorage.open(file), "Io");
  });
});
