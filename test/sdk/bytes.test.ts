import { expect } from "chai";
import { ByteReader, ByteWriter } from "../../sdk/crypto/bytes";

describe("ByteWriter", () => {
  it("copies what it is given, so finishing (which wipes its copies) leaves the caller's bytes intact", () => {
    const plain = Uint8Array.of(1, 2, 3);
    // A Node Buffer's slice() is a view: a writer that copied with it would wipe the caller's buffer on finish().
    const buffer = Buffer.from([4, 5, 6]);
    const out = new ByteWriter().bytes(plain).bytes(buffer).u8(7).finish();
    expect([...out]).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
    expect([...plain]).to.deep.equal([1, 2, 3]);
    expect([...buffer]).to.deep.equal([4, 5, 6]);
  });

  it("writes what a reader reads back", () => {
    const out = new ByteWriter().u8(9).u16(0x1234).u32(0xdeadbeef).bytes(Buffer.from("ab")).finish();
    const r = new ByteReader(out, "test", (m) => new Error(m));
    expect(r.u8("a")).to.equal(9);
    expect(r.u16("b")).to.equal(0x1234);
    expect(r.u32("c")).to.equal(0xdeadbeef);
    expect(Buffer.from(r.bytes(2, "d")).toString()).to.equal("ab");
    r.end();
  });
});
