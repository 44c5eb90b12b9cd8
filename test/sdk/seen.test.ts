import { expect } from "chai";
import { SEEN_IDS_KEPT, SEEN_IDS_PER_RECORD, SeenIds } from "../../sdk/client/seen";
import { IdentityError } from "../../sdk/client/identity";
import { MemoryStorage, StorageError } from "../../sdk/storage";

/** The hex message id of the number `n` (16 bytes, big-endian). */
const id = (n: number) => n.toString(16).padStart(32, "0");

describe("sdk: seen message ids (SeenIds)", () => {
  it("remembers ids across a reload, only once flushed", async () => {
    const storage = new MemoryStorage();
    const seen = await SeenIds.load(storage);
    seen.add(id(1));
    seen.add(id(2));
    expect((await SeenIds.load(storage)).size).to.equal(0); // not flushed yet
    await seen.flush();
    const reloaded = await SeenIds.load(storage);
    expect(reloaded.has(id(1)) && reloaded.has(id(2))).to.equal(true);
    expect(reloaded.has(id(3))).to.equal(false);
    expect(await storage.list("")).to.deep.equal(["net/seen/00000000"]);
  });

  it("keeps at most SEEN_IDS_KEPT ids, dropping the oldest record, in memory and in storage", async () => {
    const storage = new MemoryStorage();
    const seen = await SeenIds.load(storage);
    const total = SEEN_IDS_KEPT + 2 * SEEN_IDS_PER_RECORD + 7;
    for (let n = 0; n < total; n++) {
      seen.add(id(n));
      if (n % 997 === 0) await seen.flush(); // flushed at arbitrary points, as batches come
    }
    await seen.flush();
    // The newest record holds 7 ids; the records before it are full, SEEN_IDS_KEPT / SEEN_IDS_PER_RECORD in all.
    const kept = SEEN_IDS_KEPT - SEEN_IDS_PER_RECORD + 7;
    expect(seen.size).to.equal(kept);
    expect(await storage.list("net/seen/")).to.have.length(SEEN_IDS_KEPT / SEEN_IDS_PER_RECORD);
    const reloaded = await SeenIds.load(storage);
    expect(reloaded.size).to.equal(kept);
    expect(reloaded.has(id(total - kept - 1))).to.equal(false); // the newest dropped id
    expect(reloaded.has(id(total - kept))).to.equal(true); // the oldest kept id
    expect(reloaded.has(id(total - 1))).to.equal(true);
    // New ids after the reload go on filling the newest record.
    reloaded.add(id(total));
    await reloaded.flush();
    expect((await SeenIds.load(storage)).size).to.equal(kept + 1);
  });

  it("drops and reports a record that does not parse, and refuses an id that is not 16 bytes of hex", async () => {
    const storage = new MemoryStorage();
    await storage.put("net/seen/00000000", new Uint8Array(17));
    const errors: Error[] = [];
    const seen = await SeenIds.load(storage, (e) => errors.push(e));
    expect(seen.size).to.equal(0);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.be.instanceOf(IdentityError).with.property("code", "CorruptStorage");
    expect(await storage.list("")).to.deep.equal([]);
    expect(() => seen.add("abc")).to.throw(IdentityError, /32 lower-case hex digits/);
  });

  it("keeps a record the storage failed to read for a moment, and throws that failure", async () => {
    const storage = new MemoryStorage();
    const seen = await SeenIds.load(storage);
    seen.add(id(1));
    await seen.flush();
    const failing = {
      list: (prefix: string) => storage.list(prefix),
      get: (): Promise<Uint8Array | undefined> => Promise.reject(new StorageError("Io", "test: the disk is busy")),
      put: (key: string, value: Uint8Array) => storage.put(key, value),
      delete: (key: string) => storage.delete(key),
    };
    const errors: Error[] = [];
    await SeenIds.load(failing, (e) => errors.push(e)).then(
      () => expect.fail("expected the storage's error"),
      (e: unknown) => expect(e).to.be.instanceOf(StorageError),
    );
    expect(errors).to.deep.equal([]);
    expect((await SeenIds.load(storage)).has(id(1))).to.equal(true); // still there once the storage reads again
  });
});
