import { expect } from "chai";
import { x25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "node:crypto";
import { OnionError, PACKET_BYTES, peel, wrapPacket, type Hop, type PeelResult } from "../../sdk/wire/onion";
import { NATIVE_ONION_SYMMETRIC, nativeX25519 } from "../../node/onionNative";
import { PeelPool } from "../../node/peelPool";
import { createLogger } from "../../node/log";

/** A hop with its own X25519 relay key and a made-up 38-byte peer id multihash. */
function hop(seed: number): Hop & { secret: Uint8Array } {
  const secret = new Uint8Array(32).fill(seed);
  return { secret, relayPublicKey: x25519.getPublicKey(secret), peerId: new Uint8Array(38).fill(seed) };
}

const first = hop(1);
const second = hop(2);
const options = {
  relayPublicKey: first.relayPublicKey,
  sharedSecret: nativeX25519(first.secret),
  symmetric: NATIVE_ONION_SYMMETRIC,
};
const log = createLogger("peel-pool-test");

/** Packets whose first layer is `first`'s: forwards to `second` (two hops) and deliveries (`first` is the exit). */
function packets(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const payload = new TextEncoder().encode(`message ${i}`);
    const recipient = new Uint8Array(32).fill(i);
    return i % 2 === 0
      ? wrapPacket([first, second], recipient, payload)
      : wrapPacket([second, first], recipient, payload).slice(); // its first layer is `second`'s: refused by `first`
  });
}

async function outcome(p: Promise<PeelResult>): Promise<PeelResult | string> {
  return p.catch((error: Error) =>
    error instanceof OnionError ? `OnionError ${error.code}` : `Error ${error.message}`,
  );
}

function inline(packet: Uint8Array): PeelResult | string {
  try {
    return peel(packet, first.secret, options);
  } catch (error) {
    return error instanceof OnionError ? `OnionError ${error.code}` : `Error ${(error as Error).message}`;
  }
}

describe("node/peelPool: peeling relay packets on worker threads", function () {
  this.timeout(60_000);

  it("gives, for every packet, what a peel on the calling thread gives: results and errors alike", async () => {
    const pool = new PeelPool(first.secret, options, 2, log, 0); // every quiet packet lone, however fast the worker
    try {
      expect(await pool.whenReady()).to.equal(2);
      const batch = packets(40);
      batch.push(randomBytes(PACKET_BYTES), new Uint8Array(10));
      const expected = batch.map(inline);
      expect(expected.filter((e) => typeof e !== "string")).to.have.length(20);
      expect(expected.filter((e) => typeof e === "string")).to.have.length(22);
      const got = await Promise.all(batch.map((p) => outcome(pool.peel(p))));
      expect(got).to.deep.equal(expected);
      // The first packet of the turn found the pool idle and was peeled here; the other 41 went to the workers.
      expect(pool.workerPeels).to.equal(batch.length - 1);
      // A lone packet on an idle pool is peeled here at once: no hand-over to wait for.
      expect(await outcome(pool.peel(batch[0]))).to.deep.equal(expected[0]);
      expect(pool.workerPeels).to.equal(batch.length - 1);
    } finally {
      await pool.stop();
    }
  });

  it("sends packets that come one after another to the workers even when each finds them idle; a lone one stays here", async () => {
    // One at a time, each once the one before is answered (the pool idle every time), as a single stream feeds a
    // relay: all but the first go to the worker while they come within the gap (a long one here, so timing cannot
    // matter), and none with no gap (every packet is then a lone one).
    const sequence = packets(8);
    for (const [gapMs, toWorkers] of [
      [60_000, sequence.length - 1],
      [0, 0],
    ]) {
      const pool = new PeelPool(first.secret, options, 1, log, gapMs);
      try {
        expect(await pool.whenReady()).to.equal(1);
        for (const packet of sequence) expect(await outcome(pool.peel(packet))).to.deep.equal(inline(packet));
        expect(pool.workerPeels, `gap ${gapMs} ms`).to.equal(toWorkers);
      } finally {
        await pool.stop();
      }
    }
  });

  it("peels on the calling thread with no workers, and hands back what a stopped pool's workers held", async () => {
    const none = new PeelPool(first.secret, options, 0, log);
    const batch = packets(4);
    expect(await none.whenReady()).to.equal(0);
    expect(await Promise.all(batch.map((p) => outcome(none.peel(p))))).to.deep.equal(batch.map(inline));
    await none.stop();

    const pool = new PeelPool(first.secret, options, 1, log);
    expect(await pool.whenReady()).to.equal(1);
    const more = packets(64);
    const pending = more.map((p) => outcome(pool.peel(p))); // the first 32 are on their way to the worker already
    await pool.stop();
    expect(await Promise.all(pending)).to.deep.equal(more.map(inline));
    expect(pool.activeWorkers).to.equal(0);
  });

  it("refuses a worker count that is not a whole number >= 0, and a negative gap", () => {
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(() => new PeelPool(first.secret, options, bad, log)).to.throw(RangeError, /whole number of workers/);
    }
    expect(() => new PeelPool(first.secret, options, 1, log, -1)).to.throw(RangeError, /inlineGapMs/);
  });
});
