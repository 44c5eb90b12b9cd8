/**
 * A fixed random source for known-answer vectors and reproducible tests: the stream
 *
 *   SHA-256("SendingNetwork test randomness" || 0x00 || seed || uint32be(0)) || SHA-256(... || uint32be(1)) || ...
 *
 * handed out in order, `length` bytes per call. Test-only: never pass it to production code.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import type { RandomBytes } from "../../sdk/crypto/primitives";

const LABEL = new TextEncoder().encode("SendingNetwork test randomness");

/** The random source for `seed` (each call to it returns the next bytes of the stream). */
export function deterministicRandom(seed: string): RandomBytes {
  const seedBytes = new TextEncoder().encode(seed);
  let counter = 0;
  let block = new Uint8Array(0);
  let offset = 0;
  return (length: number) => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      if (offset === block.length) {
        const input = new Uint8Array(LABEL.length + 1 + seedBytes.length + 4);
        input.set(LABEL);
        input.set(seedBytes, LABEL.length + 1);
        new DataView(input.buffer).setUint32(input.length - 4, counter++);
        block = sha256(input);
        offset = 0;
      }
      out[i] = block[offset++];
    }
    return out;
  };
}

/** A source that returns `values` in order, then throws: pins exactly which secrets a function draws. */
export function fixedRandom(...values: Uint8Array[]): RandomBytes {
  const queue = [...values];
  return (length: number) => {
    const next = queue.shift();
    if (next === undefined || next.length !== length) {
      throw new Error(`fixedRandom: expected a queued ${length}-byte value, got ${next?.length ?? "none"}`);
    }
    return next.slice();
  };
}
