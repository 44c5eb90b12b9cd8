/**
 * Byte helpers shared by the crypto modules: fixed-width big-endian integers, concatenation, comparison, erasure,
 * and a strict reader for the binary formats (wire messages and serialized state). Nothing here is cryptographic;
 * it exists so every parser in sdk/crypto/ rejects the same things the same way.
 */

/** Largest value of an unsigned 32-bit field (message counters, prekey ids, epochs). */
export const MAX_U32 = 0xffff_ffff;

/**
 * Throws `make(message)` unless `value` is a Uint8Array of exactly `length` bytes (any length when omitted).
 * `where` names the calling function and `what` the argument, so the message reads like noble's.
 */
export function expectBytes(
  value: unknown,
  length: number | undefined,
  where: string,
  what: string,
  make: (message: string) => Error,
): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw make(`${where}: expected ${what} as Uint8Array, got ${value === null ? "null" : typeof value}`);
  }
  if (length !== undefined && value.length !== length) {
    throw make(`${where}: expected ${length}-byte ${what}, got ${value.length}`);
  }
  return value;
}

/** Throws `make(message)` unless `value` is an integer in [0, MAX_U32]. */
export function expectU32(value: unknown, where: string, what: string, make: (message: string) => Error): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw make(`${where}: expected ${what} as an integer in [0, 2^32 - 1], got ${String(value)}`);
  }
  return value;
}

/** The concatenation of `parts` in a new array. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Writes `value` (0 ≤ value ≤ MAX_U32) big-endian at `offset`. */
export function writeU32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value >>> 24;
  out[offset + 1] = (value >>> 16) & 0xff;
  out[offset + 2] = (value >>> 8) & 0xff;
  out[offset + 3] = value & 0xff;
}

/** Reads a big-endian uint32 at `offset`. */
export function readU32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]) >>> 0;
}

/** The 4-byte big-endian encoding of `value`. */
export function u32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  writeU32(out, 0, value);
  return out;
}

/**
 * Equality of two byte arrays, in time that depends only on their lengths. Used for secrets and public values
 * alike: the cost (32 iterations) is nothing beside a hash.
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Overwrites each array with zeros. Best effort in JavaScript: it erases the buffers this code owns, not copies a
 * garbage collector may have made, and it is why the modules copy every secret they are handed.
 */
export function wipe(...arrays: (Uint8Array | undefined)[]): void {
  for (const a of arrays) if (a !== undefined) a.fill(0);
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}

/**
 * A cursor over a byte string that throws `make(message)` on any read past the end, and `end()` that throws unless
 * every byte was consumed: the strict parsers of sdk/crypto/ are built on it.
 */
export class ByteReader {
  #offset = 0;

  /**
   * @param bytes the input, read in place (slices returned by `bytes()` are copies)
   * @param where the parsing function's name, used in error messages
   * @param make builds the module's typed error from a message
   */
  constructor(
    private readonly input: Uint8Array,
    private readonly where: string,
    private readonly make: (message: string) => Error,
  ) {}

  /** Bytes not yet read. */
  get remaining(): number {
    return this.input.length - this.#offset;
  }

  #take(n: number, what: string): number {
    if (this.remaining < n) {
      throw this.make(
        `${this.where}: expected ${n} more bytes for ${what} at offset ${this.#offset}, got ${this.remaining}`,
      );
    }
    const at = this.#offset;
    this.#offset += n;
    return at;
  }

  /** Reads one byte. */
  u8(what: string): number {
    return this.input[this.#take(1, what)];
  }

  /** Reads a big-endian uint16. */
  u16(what: string): number {
    const at = this.#take(2, what);
    return (this.input[at] << 8) | this.input[at + 1];
  }

  /** Reads a big-endian uint32. */
  u32(what: string): number {
    return readU32(this.input, this.#take(4, what));
  }

  /** Reads a big-endian uint64 that must be a safe integer (below 2^53: a time in ms, say). */
  u64(what: string): number {
    const at = this.#take(8, what);
    const high = readU32(this.input, at);
    if (high >= 2 ** 21) throw this.make(`${this.where}: expected ${what} below 2^53, got high word ${high}`);
    return high * 2 ** 32 + readU32(this.input, at + 4);
  }

  /** Reads `n` bytes into a new array. */
  bytes(n: number, what: string): Uint8Array {
    const at = this.#take(n, what);
    return this.input.slice(at, at + n);
  }

  /** Throws unless the whole input was consumed. */
  end(): void {
    if (this.remaining !== 0) {
      throw this.make(
        `${this.where}: expected end of input at offset ${this.#offset}, got ${this.remaining} more bytes`,
      );
    }
  }
}

/** A growable byte buffer for the serializers. */
export class ByteWriter {
  #chunks: Uint8Array[] = [];

  /** Appends one byte. */
  u8(value: number): this {
    this.#chunks.push(Uint8Array.of(value & 0xff));
    return this;
  }

  /** Appends a big-endian uint16. */
  u16(value: number): this {
    this.#chunks.push(Uint8Array.of((value >>> 8) & 0xff, value & 0xff));
    return this;
  }

  /** Appends a big-endian uint32. */
  u32(value: number): this {
    this.#chunks.push(u32Bytes(value));
    return this;
  }

  /** Appends a safe integer (a time in ms, say) as a big-endian uint64: u32 high || u32 low. */
  u64(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`ByteWriter.u64: expected a safe integer of at least 0, got ${value}`);
    }
    return this.u32(Math.floor(value / 2 ** 32)).u32(value % 2 ** 32);
  }

  /**
   * Appends a copy of `value`. Copied through Uint8Array's own `slice`: a Node Buffer's `slice` is a view, and
   * `finish` wipes the chunks, which would wipe the caller's buffer.
   */
  bytes(value: Uint8Array): this {
    this.#chunks.push(Uint8Array.prototype.slice.call(value));
    return this;
  }

  /** The bytes written so far; the internal copies are wiped (they may hold secrets). */
  finish(): Uint8Array {
    const out = concatBytes(...this.#chunks);
    wipe(...this.#chunks);
    this.#chunks = [];
    return out;
  }
}
