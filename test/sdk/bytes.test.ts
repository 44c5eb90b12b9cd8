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

  it("writes a safe integer as a big-endian uint64 and reads it back; refuses anything else both ways", () => {
    const values = [0, 1, 2 ** 32 - 1, 2 ** 32, 1_764_000_000_000, Number.MAX_SAFE_INTEGER];
    const w = new ByteWriter();
    for (const v of values) w.u64(v);
    const out = w.finish();
    expect(Buffer.from(out.subarray(8, 16)).toString("hex")).to.equal("0000000000000001");
    expect(Buffer.from(out.subarray(24, 32)).toString("hex")).to.equal("0000000100000000");
    const r = new ByteReader(out, "test", (m) => new Error(m));
    expect(values.map((_, i) => r.u64(`v${i}`))).to.deep.equal(values);
    r.end();
    for (const bad of [-1, 0.5, 2 ** 53, Number.NaN]) expect(() => new ByteWriter().u64(bad)).to.throw(RangeError);
    const high = new ByteWriter()
      .u32(2 ** 21)
      .u32(0)
      .finish(); // 2^53: past what a number holds exactly
    expect(() => new ByteReader(high, "test", (m) => new TypeError(m)).u64("time")).to.throw(
      TypeError,
      /time below 2\^53/,
    );
  });
});
