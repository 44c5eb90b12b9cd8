/**
 * The request/answer loop the edge node's framed protocols share (prekeys, bills): read frames from an inbound
 * libp2p stream with the protocol's size limit, hand each to the service, write what it answers, and turn every
 * failure into a typed error frame (sdk/wire/frame.ts) instead of a crash. A framing error leaves the stream out of
 * sync, so it is answered and the stream closed; a message that does not parse or is refused is answered and the
 * stream keeps serving; an exception inside the service is answered INTERNAL and logged. A stream that stays silent
 * for STREAM_IDLE_MS is closed, so an idle peer cannot hold a handler open. With a rate limiter, a peer over its rate is
 * answered RATE_LIMITED for each frame beyond it (the stream stays open; the request is not handled).
 */
import type { Connection, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import {
  FrameDecoder,
  FrameError,
  WireErrorCode,
  encodeErrorFrame,
  encodeFrame,
  type ErrorAnswer,
  type Frame,
} from "../sdk/wire/frame";
import { MessageError } from "../sdk/wire/messages";
import type { Logger } from "./log";
import { drained } from "../sdk/net/drain";
import { readFromNow } from "../sdk/net/reader";
import type { RateLimiter } from "./rateLimit";

/** A silent stream is closed after 30 s: a request is one frame, written at once; a minute of nothing is a stall. */
export const STREAM_IDLE_MS = 30_000;

/** A refusal a service throws to answer with an error frame and keep the stream open. */
export class RequestRefused extends Error {
  readonly code: WireErrorCode;
  constructor(code: WireErrorCode, message: string) {
    super(message);
    this.name = "RequestRefused";
    this.code = code;
  }
}

/** What a service does with one frame: answers (zero or more frames, written in order). */
export type FrameHandler = (frame: Frame, remotePeer: string) => Promise<readonly Frame[]> | readonly Frame[];

/** Told about every refused or failed frame (metrics). */
export type RefusalHook = (code: WireErrorCode) => void;

async function write(stream: Stream, bytes: Uint8Array): Promise<void> {
  if (!stream.send(bytes)) await drained(stream);
}

/**
 * Serves one inbound stream: frames in, answers out, until the peer closes its side. Never throws: a failure of the
 * stream itself aborts it and is logged at debug level.
 */
export async function serveFrames(
  stream: Stream,
  connection: Connection,
  maxFrameBytes: number,
  handler: FrameHandler,
  log: Logger,
  onRefused?: RefusalHook,
  limiter?: RateLimiter,
): Promise<void> {
  const from = connection.remotePeer.toString();
  const decoder = new FrameDecoder(maxFrameBytes);
  const answer = async (error: ErrorAnswer) => {
    onRefused?.(error.code);
    await write(stream, encodeErrorFrame(error, maxFrameBytes));
  };
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => stream.abort(new Error("serveFrames: stream idle")), STREAM_IDLE_MS);
    idle.unref();
  };
  try {
    arm();
    for await (const chunk of stream) {
      arm();
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        await answer(framingRefusal(error));
        await stream.close();
        await stream.closeRead();
        return;
      }
      for (const frame of frames) {
        if (limiter !== undefined && !limiter.take(from)) {
          const { perSecond, burst } = limiter.limit;
          await answer({
            code: WireErrorCode.RATE_LIMITED,
            message: `too many requests from this peer: at most ${perSecond} a second, ${burst} at once`,
          });
          continue;
        }
        let out: readonly Frame[];
        try {
          out = await handler(frame, from);
        } catch (error) {
          if (error instanceof RequestRefused) {
            await answer({ code: error.code, message: error.message });
          } else if (error instanceof MessageError) {
            const code = error.code === "MESSAGE_UNKNOWN_TYPE" ? WireErrorCode.UNSUPPORTED : WireErrorCode.MALFORMED;
            await answer({ code, message: error.message });
          } else {
            log.error("request failed", { from, type: frame.type, error });
            await answer({ code: WireErrorCode.INTERNAL, message: "request failed" });
          }
          continue;
        }
        for (const f of out) await write(stream, encodeFrame(f.type, f.body, maxFrameBytes));
      }
    }
    try {
      decoder.end();
    } catch (error) {
      await answer(framingRefusal(error));
    }
    await stream.close();
  } catch (error) {
    log.debug("stream failed", { from, error });
    stream.abort(error as Error);
  } finally {
    clearTimeout(idle);
  }
}

/** Writes `frames` on a fresh outbound stream, closes the write side and collects every frame answered. */
export async function exchangeFrames(
  stream: Stream,
  frames: readonly Frame[],
  maxFrameBytes: number,
  signal?: AbortSignal,
): Promise<Frame[]> {
  const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
  for (const f of frames) {
    const bytes = encodeFrame(f.type, f.body, maxFrameBytes);
    if (!stream.send(bytes)) await drained(stream, signal);
  }
  await stream.close({ signal });
  const decoder = new FrameDecoder(maxFrameBytes);
  const out: Frame[] = [];
  for await (const chunk of chunks) out.push(...decoder.push(chunk));
  decoder.end();
  return out;
}

/**
 * The error answer for a framing failure of the sdk FrameDecoder (a length above the limit is TOO_LARGE; a zero length
 * or a stream ending inside a frame MALFORMED); anything that is not a FrameError is rethrown.
 */
export function framingRefusal(error: unknown): ErrorAnswer {
  if (!(error instanceof FrameError)) throw error;
  return {
    code: error.code === "FRAME_TOO_LARGE" ? WireErrorCode.TOO_LARGE : WireErrorCode.MALFORMED,
    message: error.message,
  };
}
