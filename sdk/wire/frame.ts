/**
 * Length-prefixed frames, the one framing every Sending Network libp2p protocol uses on its streams:
 *
 *   frame = length (4 bytes, big-endian uint32, counts the type byte and the body) || type (1 byte) || body
 *
 * A fixed 4-byte length instead of a varint: one way to encode each length (no over-long varints to reject), and the
 * decoder knows after exactly 4 bytes whether a frame is acceptable. Each protocol has its own MAX_FRAME_BYTES, and
 * the decoder refuses a larger length as soon as it has read the prefix, before it allocates or buffers the body.
 * Type 0xFF is reserved in every protocol for the error answer a node sends back (code + message). docs/WIRE.md
 * gives the formats byte by byte.
 */
import { PACKET_BYTES } from "./onion";

/** Protocol id of the layered-packet relay (one packet per frame, hop to hop). */
export const RELAY_PROTOCOL = "/sending/relay/1.0.0";
/** Protocol id of the home-node inbox (store, fetch, ack, list); 2.0.0: fetch and list carry a cursor. */
export const INBOX_PROTOCOL = "/sending/inbox/2.0.0";
/** Protocol id of prekey publication and bundle fetching. */
export const PREKEYS_PROTOCOL = "/sending/prekeys/1.0.0";
/** Protocol id of edge node → guardian bill hand-over. */
export const BILLS_PROTOCOL = "/sending/bills/1.0.0";

/** The protocol ids this module frames. */
export type ProtocolId =
  typeof RELAY_PROTOCOL | typeof INBOX_PROTOCOL | typeof PREKEYS_PROTOCOL | typeof BILLS_PROTOCOL;

/** Bytes of the length prefix. */
export const LENGTH_PREFIX_BYTES = 4;
/** Bytes of the type field. */
export const TYPE_BYTES = 1;

/** Relay: one fixed-size packet and its type byte, nothing else ever travels on a relay stream. */
export const RELAY_MAX_FRAME_BYTES = TYPE_BYTES + PACKET_BYTES;
/** Inbox: a fetch answer carries at most INBOX_MAX_BATCH stored packets (with their ids and times) at once. */
export const INBOX_MAX_FRAME_BYTES = 64 * 1024 + 4 * 1024;
/** Prekeys: a bundle publication with up to 100 one-time prekeys (36 bytes each) plus identity and signed prekey. */
export const PREKEYS_MAX_FRAME_BYTES = 8 * 1024;
/** Bills: up to 64 signed bills of 135 bytes (8,640) per hand-over, rounded up. */
export const BILLS_MAX_FRAME_BYTES = 16 * 1024;

/** The frame limit of each protocol. */
export const MAX_FRAME_BYTES: Readonly<Record<ProtocolId, number>> = {
  [RELAY_PROTOCOL]: RELAY_MAX_FRAME_BYTES,
  [INBOX_PROTOCOL]: INBOX_MAX_FRAME_BYTES,
  [PREKEYS_PROTOCOL]: PREKEYS_MAX_FRAME_BYTES,
  [BILLS_PROTOCOL]: BILLS_MAX_FRAME_BYTES,
};

/** Type byte of a relay frame: its body is one layered packet of exactly PACKET_BYTES (sdk/wire/onion.ts). */
export const RELAY_PACKET_TYPE = 0x01;
/** Type byte of the error answer, reserved in every protocol. */
export const ERROR_FRAME_TYPE = 0xff;
/** Longest error message in UTF-8 bytes: enough for a sentence, too short to be a channel for anything else. */
export const MAX_ERROR_MESSAGE_BYTES = 256;

/** Why a frame was refused. */
export type FrameErrorCode =
  | "FRAME_TOO_LARGE" // the length prefix exceeds the protocol's limit
  | "FRAME_EMPTY" // the length prefix is 0 (no type byte)
  | "FRAME_TRUNCATED" // the stream ended inside a frame
  | "FRAME_BAD_ARGUMENT" // an encoder was given something it cannot encode
  | "FRAME_BAD_ERROR_BODY"; // an error answer whose body does not parse

/** A frame that could not be encoded or decoded. */
export class FrameError extends Error {
  readonly code: FrameErrorCode;
  constructor(code: FrameErrorCode, message: string) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

/** One decoded frame. `body` is owned by the caller (never a view into a buffer the decoder reuses). */
export interface Frame {
  readonly type: number;
  readonly body: Uint8Array;
}

/** The error codes a node answers with (the wire values of an error frame). */
export const WireErrorCode = {
  MALFORMED: 1, // a frame or message did not parse
  TOO_LARGE: 2, // a frame or payload above a limit
  UNAUTHORIZED: 3, // a missing or bad signature
  REPLAYED: 4, // a timestamp out of the window or a nonce seen before
  QUOTA_EXCEEDED: 5, // the recipient's inbox is full
  NOT_FOUND: 6, // no such message, bundle or prekey
  RATE_LIMITED: 7, // too many requests from this peer
  UNSUPPORTED: 8, // a message type this protocol does not define
  INTERNAL: 9, // the node failed; the request may be retried
} as const;
export type WireErrorCode = (typeof WireErrorCode)[keyof typeof WireErrorCode];
const WIRE_ERROR_CODES = new Set<number>(Object.values(WireErrorCode));

/** The body of an error frame. */
export interface ErrorAnswer {
  readonly code: WireErrorCode;
  readonly message: string;
}

/**
 * Encodes one frame: 4-byte length || type || body. Throws FrameError("FRAME_TOO_LARGE") when the frame would
 * exceed `maxFrameBytes` (the sender checks the same limit the receiver enforces).
 */
export function encodeFrame(type: number, body: Uint8Array, maxFrameBytes: number): Uint8Array {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) {
    throw new FrameError("FRAME_BAD_ARGUMENT", `encodeFrame: expected a type byte in [0, 255], got ${String(type)}`);
  }
  if (!(body instanceof Uint8Array)) {
    throw new FrameError("FRAME_BAD_ARGUMENT", "encodeFrame: expected the body as Uint8Array");
  }
  const length = TYPE_BYTES + body.length;
  if (length > maxFrameBytes) {
    throw new FrameError("FRAME_TOO_LARGE", `encodeFrame: frame of ${length} bytes exceeds the limit ${maxFrameBytes}`);
  }
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + length);
  new DataView(out.buffer).setUint32(0, length, false);
  out[LENGTH_PREFIX_BYTES] = type;
  out.set(body, LENGTH_PREFIX_BYTES + TYPE_BYTES);
  return out;
}

/**
 * Several frames of one type, in one buffer: what `encodeFrame` gives for each body, concatenated, with one
 * allocation (a relay writing a batch of packets to a next hop). Throws as `encodeFrame` does.
 */
export function encodeFrames(type: number, bodies: readonly Uint8Array[], maxFrameBytes: number): Uint8Array {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) {
    throw new FrameError("FRAME_BAD_ARGUMENT", `encodeFrames: expected a type byte in [0, 255], got ${String(type)}`);
  }
  let total = 0;
  for (const body of bodies) {
    if (!(body instanceof Uint8Array)) {
      throw new FrameError("FRAME_BAD_ARGUMENT", "encodeFrames: expected every body as Uint8Array");
    }
    const length = TYPE_BYTES + body.length;
    if (length > maxFrameBytes) {
      throw new FrameError(
        "FRAME_TOO_LARGE",
        `encodeFrames: frame of ${length} bytes exceeds the limit ${maxFrameBytes}`,
      );
    }
    total += LENGTH_PREFIX_BYTES + length;
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const body of bodies) {
    view.setUint32(at, TYPE_BYTES + body.length, false);
    out[at + LENGTH_PREFIX_BYTES] = type;
    out.set(body, at + LENGTH_PREFIX_BYTES + TYPE_BYTES);
    at += LENGTH_PREFIX_BYTES + TYPE_BYTES + body.length;
  }
  return out;
}

/**
 * A chunk as libp2p streams deliver it: a Uint8Array, or a Uint8ArrayList (anything with `subarray()`; a list's
 * parts are read one by one when it yields them, instead of being joined into one copy first).
 */
export type StreamChunk = Uint8Array | { subarray(): Uint8Array; [Symbol.iterator]?(): Iterator<Uint8Array> };

/**
 * An incremental frame decoder. Feed it chunks as they arrive with `push`; it returns the frames completed by each
 * chunk. It holds at most 4 prefix bytes plus one body it has already accepted (≤ maxFrameBytes), whatever the
 * chunking. After an error the decoder is poisoned: the stream is out of sync and must be reset.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  private readonly prefix = new Uint8Array(LENGTH_PREFIX_BYTES);
  private prefixFill = 0;
  private frame: Uint8Array | undefined; // type || body of the frame being read, allocated once its length passed
  private frameFill = 0;
  private failed: FrameError | undefined;

  constructor(maxFrameBytes: number) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < TYPE_BYTES || maxFrameBytes > 0xffff_ffff) {
      throw new FrameError(
        "FRAME_BAD_ARGUMENT",
        `FrameDecoder: expected maxFrameBytes in [1, 2^32 - 1], got ${String(maxFrameBytes)}`,
      );
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes of an incomplete frame held now (prefix and accepted body): never above 4 + maxFrameBytes. */
  get bufferedBytes(): number {
    return this.frame === undefined ? this.prefixFill : LENGTH_PREFIX_BYTES + this.frame.length;
  }

  /** Consumes a chunk and returns the frames it completes. Throws FrameError on an oversize or empty length. */
  push(chunk: StreamChunk): Frame[] {
    if (this.failed !== undefined) throw this.failed;
    const frames: Frame[] = [];
    if (chunk instanceof Uint8Array) this.consume(chunk, frames);
    else if (chunk[Symbol.iterator] !== undefined) {
      for (const part of chunk as Iterable<Uint8Array>) this.consume(part, frames);
    } else this.consume(chunk.subarray(), frames);
    return frames;
  }

  /** Reads `bytes` on from where the previous bytes left off, adding the frames they complete to `frames`. */
  private consume(bytes: Uint8Array, frames: Frame[]): void {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.frame === undefined) {
        const take = Math.min(LENGTH_PREFIX_BYTES - this.prefixFill, bytes.length - offset);
        this.prefix.set(bytes.subarray(offset, offset + take), this.prefixFill);
        this.prefixFill += take;
        offset += take;
        if (this.prefixFill < LENGTH_PREFIX_BYTES) break;
        const length = new DataView(this.prefix.buffer).getUint32(0, false);
        this.prefixFill = 0;
        if (length === 0) return this.fail(new FrameError("FRAME_EMPTY", "FrameDecoder: frame length 0 (no type)"));
        if (length > this.maxFrameBytes) {
          return this.fail(
            new FrameError(
              "FRAME_TOO_LARGE",
              `FrameDecoder: frame of ${length} bytes exceeds the limit ${this.maxFrameBytes}`,
            ),
          );
        }
        this.frame = new Uint8Array(length);
        this.frameFill = 0;
      }
      const take = Math.min(this.frame.length - this.frameFill, bytes.length - offset);
      this.frame.set(bytes.subarray(offset, offset + take), this.frameFill);
      this.frameFill += take;
      offset += take;
      if (this.frameFill === this.frame.length) {
        frames.push({ type: this.frame[0], body: this.frame.subarray(TYPE_BYTES) });
        this.frame = undefined;
      }
    }
  }

  /** Call when the stream ended: throws FrameError("FRAME_TRUNCATED") if it ended inside a frame. */
  end(): void {
    if (this.failed !== undefined) throw this.failed;
    if (this.frame !== undefined || this.prefixFill > 0) {
      this.fail(new FrameError("FRAME_TRUNCATED", `FrameDecoder: stream ended inside a frame`));
    }
  }

  private fail(error: FrameError): never {
    this.failed = error;
    this.frame = undefined;
    this.prefixFill = 0;
    throw error;
  }
}

/** Decodes every frame of a chunk source (a libp2p stream), ending with a check that no frame was cut short. */
export async function* decodeFrames(
  source: AsyncIterable<StreamChunk> | Iterable<StreamChunk>,
  maxFrameBytes: number,
): AsyncGenerator<Frame, void, undefined> {
  const decoder = new FrameDecoder(maxFrameBytes);
  for await (const chunk of source) yield* decoder.push(chunk);
  decoder.end();
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * The body of an error frame: code (1 byte) || message length (2 bytes, big-endian) || UTF-8 message. A message
 * longer than MAX_ERROR_MESSAGE_BYTES is cut at a character boundary.
 */
export function encodeErrorAnswer(answer: ErrorAnswer): Uint8Array {
  if (!WIRE_ERROR_CODES.has(answer.code)) {
    throw new FrameError("FRAME_BAD_ARGUMENT", `encodeErrorAnswer: unknown error code ${String(answer.code)}`);
  }
  let message = utf8Encoder.encode(answer.message);
  if (message.length > MAX_ERROR_MESSAGE_BYTES) {
    let cut = MAX_ERROR_MESSAGE_BYTES;
    while (cut > 0 && (message[cut] & 0xc0) === 0x80) cut--; // do not split a UTF-8 sequence
    message = message.subarray(0, cut);
  }
  const out = new Uint8Array(3 + message.length);
  out[0] = answer.code;
  out[1] = message.length >>> 8;
  out[2] = message.length & 0xff;
  out.set(message, 3);
  return out;
}

/** The full error frame (length, type 0xFF, body) for a protocol limit. */
export function encodeErrorFrame(answer: ErrorAnswer, maxFrameBytes: number): Uint8Array {
  return encodeFrame(ERROR_FRAME_TYPE, encodeErrorAnswer(answer), maxFrameBytes);
}

/** Parses an error frame's body strictly (known code, exact length, valid UTF-8) or throws FrameError. */
export function parseErrorAnswer(body: Uint8Array): ErrorAnswer {
  const bad = (why: string) => new FrameError("FRAME_BAD_ERROR_BODY", `parseErrorAnswer: ${why}`);
  if (body.length < 3) throw bad(`expected at least 3 bytes, got ${body.length}`);
  const code = body[0];
  if (!WIRE_ERROR_CODES.has(code)) throw bad(`expected a known error code, got ${code}`);
  const length = (body[1] << 8) | body[2];
  if (length > MAX_ERROR_MESSAGE_BYTES) throw bad(`message of ${length} bytes exceeds ${MAX_ERROR_MESSAGE_BYTES}`);
  if (body.length !== 3 + length) throw bad(`expected ${3 + length} bytes, got ${body.length}`);
  let message: string;
  try {
    message = utf8Decoder.decode(body.subarray(3));
  } catch {
    throw bad("expected a UTF-8 message");
  }
  return { code: code as WireErrorCode, message };
}
