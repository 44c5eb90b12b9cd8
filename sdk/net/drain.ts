/**
 * Waiting for a libp2p stream to take more bytes, without the library's `onDrain()`. In @libp2p/utils 7,
 * `AbstractMessageStream.onDrain()` keeps the promise of the first drain and hands the same, already resolved,
 * promise to every later call: a writer that waits on it after the first drain does not wait at all, and buffers
 * without bound behind a peer that stopped reading. `drained` waits for the next 'drain' event itself.
 */
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };

/** A stream that closed while a writer waited for it to drain. */
export class StreamClosedWhileWaitingError extends Error {
  constructor(cause?: Error) {
    super(`stream closed while waiting for it to drain${cause ? `: ${cause.message}` : ""}`, { cause });
    this.name = "StreamClosedWhileWaitingError";
  }
}

/**
 * Resolves when `stream` can take more bytes: at once if it can now, else at its next 'drain' event. Rejects when the
 * stream closes first (StreamClosedWhileWaitingError) or `signal` aborts (with its reason).
 */
export function drained(stream: Stream, signal?: AbortSignal): Promise<void> {
  if (!stream.writableNeedsDrain) return Promise.resolve();
  if (signal?.aborted === true) return Promise.reject(signal.reason as Error);
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      stream.removeEventListener("drain", onDrain);
      stream.removeEventListener("close", onClose);
      signal?.removeEventListener("abort", onAbort);
    };
    const onDrain = () => {
      done();
      resolve();
    };
    const onClose = (event: Event) => {
      done();
      reject(new StreamClosedWhileWaitingError((event as Event & { error?: Error }).error));
    };
    const onAbort = () => {
      done();
      reject(signal?.reason as Error);
    };
    stream.addEventListener("drain", onDrain);
    stream.addEventListener("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
