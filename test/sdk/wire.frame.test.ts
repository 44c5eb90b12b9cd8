import { expect } from "chai";
import fc from "fast-check";
import {
  BILLS_PROTOCOL,
  ERROR_FRAME_TYPE,
  FrameDecoder,
  FrameError,
  INBOX_PROTOCOL,
  LENGTH_PREFIX_BYTES,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_FRAME_BYTES,
  PREKEYS_PROTOCOL,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PROTOCOL,
  WireErrorCode,
  decodeFrames,
  encodeErrorAnswer,
  encodeErrorFrame,
  encodeFrame,
  encodeFrames,
  parseErrorAnswer,
  type Frame,
} from "../../sdk/wire/frame";
import { PACKET_BYTES } from "../../sdk/wire/onion";

function expectFrameError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(FrameError);
    expect((e as FrameError).code).to.equal(code);
    return;
  }
  expect.fail(`expected FrameError ${code}`);
}

/** Splits `bytes` at the given cut points (sorted, deduplicated, inside the array). */
function chunked(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let last = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(last, p));
    last = p;
  }
  return out;
}

describe("sdk/wire frame: length-prefixed frames", () => {
  it("names one versioned protocol id and limit per protocol; a relay frame holds exactly one packet", () => {
    expect(Object.keys(MAX_FRAME_BYTES).sort()).to.deep.equal(
      ["/sending/bills/1.0.0", "/sending/inbox/2.0.0", "/sending/prekeys/1.0.0", "/sending/relay/1.0.0"].sort(),
    );
    expect(RELAY_MAX_FRAME_BYTES).to.equal(1 + PACKET_BYTES);
    expect(encodeFrame(1, new Uint8Array(PACKET_BYTES), RELAY_MAX_FRAME_BYTES).length).to.equal(4 + 1 + PACKET_BYTES);
    expectFrameError(() => encodeFrame(1, new Uint8Array(PACKET_BYTES + 1), RELAY_MAX_FRAME_BYTES), "FRAME_TOO_LARGE");
  });

  it("encodes length (big-endian, type + body) || type || body", () => {
    const frame = encodeFrame(7, Uint8Array.of(0xaa, 0xbb), 100);
    expect(Array.from(frame)).to.deep.equal([0, 0, 0, 3, 7, 0xaa, 0xbb]);
  });

  it("encodes several frames in one buffer exactly as encodeFrame does each, and refuses what it refuses", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 60 }), { maxLength: 8 }),
        fc.integer({ min: 0, max: 255 }),
        (bodies, type) => {
          const one = encodeFrames(type, bodies, 100);
          const each = bodies.map((b) => encodeFrame(type, b, 100));
          expect(Buffer.from(one).equals(Buffer.concat(each))).to.equal(true);
        },
      ),
    );
    expect(() => encodeFrames(1, [new Uint8Array(10), new Uint8Array(100)], 100)).to.throw(FrameError, "exceeds");
    expect(() => encodeFrames(256, [], 100)).to.throw(FrameError, "type byte");
  });

  it("decodes frames however the stream cuts them, one byte at a time included", () => {
    const frames = [encodeFrame(1, Uint8Array.of(1, 2, 3), 64), encodeFrame(2, new Uint8Array(0), 64)];
    const stream = Buffer.concat(frames);
    const decoder = new FrameDecoder(64);
    const out: Frame[] = [];
    for (const b of stream) out.push(...decoder.push(Uint8Array.of(b)));
    decoder.end();
    expect(out.map((f) => [f.type, Array.from(f.body)])).to.deep.equal([
      [1, [1, 2, 3]],
      [2, []],
    ]);
  });

  it("accepts Uint8ArrayList-like chunks (anything with subarray())", () => {
    const decoder = new FrameDecoder(64);
    const bytes = encodeFrame(5, Uint8Array.of(9), 64);
    expect(decoder.push({ subarray: () => bytes })).to.have.length(1);
  });

  it("reads a Uint8ArrayList's parts one by one, without joining them, frames cut across parts included", () => {
    const bytes = Buffer.concat([encodeFrame(5, Uint8Array.of(9, 8, 7), 64), encodeFrame(6, Uint8Array.of(1), 64)]);
    const parts = [bytes.subarray(0, 3), bytes.subarray(3, 9), bytes.subarray(9)];
    const list = {
      subarray: (): Uint8Array => expect.fail("the decoder joined the list's parts into one copy"),
      *[Symbol.iterator]() {
        yield* parts;
      },
    };
    const frames = new FrameDecoder(64).push(list);
    expect(frames.map((f) => [f.type, Array.from(f.body)])).to.deep.equal([
      [5, [9, 8, 7]],
      [6, [1]],
    ]);
  });

  it("refuses an oversize length from its 4-byte prefix alone, before any body arrives", () => {
    const decoder = new FrameDecoder(MAX_FRAME_BYTES[PREKEYS_PROTOCOL]);
    expectFrameError(() => decoder.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff)), "FRAME_TOO_LARGE");
    expect(decoder.bufferedBytes).to.equal(0);
    // Poisoned: the stream is out of sync.
    expectFrameError(() => decoder.push(Uint8Array.of(0)), "FRAME_TOO_LARGE");
  });

  it("refuses a zero length and a stream that ends inside a frame", () => {
    expectFrameError(() => new FrameDecoder(10).push(new Uint8Array(4)), "FRAME_EMPTY");
    const decoder = new FrameDecoder(10);
    decoder.push(Uint8Array.of(0, 0, 0, 5, 1));
    expectFrameError(() => decoder.end(), "FRAME_TRUNCATED");
    const prefixOnly = new FrameDecoder(10);
    prefixOnly.push(Uint8Array.of(0, 0));
    expectFrameError(() => prefixOnly.end(), "FRAME_TRUNCATED");
  });

  it("decodes an async stream with decodeFrames and reports truncation at its end", async () => {
    async function* source() {
      yield encodeFrame(3, Uint8Array.of(4), 16);
      yield Uint8Array.of(0, 0);
    }
    const seen: number[] = [];
    let error: unknown;
    try {
      for await (const f of decodeFrames(source(), 16)) seen.push(f.type);
    } catch (e) {
      error = e;
    }
    expect(seen).to.deep.equal([3]);
    expect(error).to.be.instanceOf(FrameError);
  });

  it("round-trips the error answer, cuts long messages at a UTF-8 boundary, and parses strictly", () => {
    const frame = encodeErrorFrame({ code: WireErrorCode.QUOTA_EXCEEDED, message: "inbox full" }, 64);
    const [decoded] = new FrameDecoder(64).push(frame);
    expect(decoded.type).to.equal(ERROR_FRAME_TYPE);
    expect(parseErrorAnswer(decoded.body)).to.deep.equal({ code: WireErrorCode.QUOTA_EXCEEDED, message: "inbox full" });
    const long = parseErrorAnswer(encodeErrorAnswer({ code: WireErrorCode.INTERNAL, message: "é".repeat(200) }));
    expect(long.message).to.equal("é".repeat(MAX_ERROR_MESSAGE_BYTES / 2));
    expectFrameError(() => parseErrorAnswer(Uint8Array.of(0, 0, 0)), "FRAME_BAD_ERROR_BODY");
    expectFrameError(() => parseErrorAnswer(Uint8Array.of(1, 0, 1)), "FRAME_BAD_ERROR_BODY");
    expectFrameError(() => parseErrorAnswer(Uint8Array.of(1, 0, 1, 0xff)), "FRAME_BAD_ERROR_BODY");
    expectFrameError(() => parseErrorAnswer(Uint8Array.of(1, 0xff, 0xff)), "FRAME_BAD_ERROR_BODY");
    expectFrameError(() => encodeErrorAnswer({ code: 42 as WireErrorCode, message: "" }), "FRAME_BAD_ARGUMENT");
  });

  it("fuzz: 10,000 random and mutated streams, cut anywhere: only FrameError, never a buffer above the limit, valid ones round-trip", () => {
    const MAX = MAX_FRAME_BYTES[BILLS_PROTOCOL];
    const frameArb = fc.record({ type: fc.nat(255), body: fc.uint8Array({ maxLength: 300 }) });
    const valid = fc.array(frameArb, { maxLength: 5 });
    fc.assert(
      fc.property(
        valid,
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.oneof(
          fc.constant<[number, number][]>([]),
          fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 3 }),
        ),
        fc.uint8Array({ maxLength: 16 }),
        (frames, cuts, flips, junk) => {
          const stream = Buffer.concat([...frames.map((f) => encodeFrame(f.type, f.body, MAX)), junk]);
          for (const [at, x] of flips) if (stream.length > 0) stream[at % stream.length] ^= x;
          const untouched = flips.length === 0 && junk.length === 0;
          const decoder = new FrameDecoder(MAX);
          const out: Frame[] = [];
          try {
            for (const c of chunked(stream, cuts)) {
              out.push(...decoder.push(c));
              if (decoder.bufferedBytes > LENGTH_PREFIX_BYTES + MAX) return false;
            }
            decoder.end();
          } catch (e) {
            return e instanceof FrameError && !untouched;
          }
          if (untouched) {
            expect(out.map((f) => [f.type, Buffer.from(f.body).toString("hex")])).to.deep.equal(
              frames.map((f) => [f.type, Buffer.from(f.body).toString("hex")]),
            );
          }
          return out.every((f) => f.body.length + 1 <= MAX);
        },
      ),
      { numRuns: 10_000 },
    );
  });

  it("keeps the limits of the inbox and prekey protocols apart from the relay's", () => {
    expect(MAX_FRAME_BYTES[INBOX_PROTOCOL]).to.be.greaterThan(MAX_FRAME_BYTES[RELAY_PROTOCOL]);
    expect(MAX_FRAME_BYTES[PREKEYS_PROTOCOL]).to.be.lessThan(MAX_FRAME_BYTES[INBOX_PROTOCOL]);
  });
});
