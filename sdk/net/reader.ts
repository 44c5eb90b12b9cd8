/**
 * Reading a libp2p stream from the moment it opens.
 *
 * A libp2p 3 stream (@libp2p/utils 7, `AbstractMessageStream`) starts listening for its remote's data and end only
 * when it is first iterated: its async iterator adds the 'message', 'remoteCloseWrite' and 'close' listeners on the
 * first `next()`. Bytes that arrive earlier wait in the stream's buffer and are handed over then, but an end that
 * arrives earlier is an event nobody heard: a stream whose remote answered and closed its side while this side was
 * still writing (a node that refuses a frame and closes at once, while the client waits for a drain or for its own
 * `close()`) is then iterated forever, or until a timeout, and the answer is lost with it.
 *
 * `readFromNow` takes the first step of the iteration at once, so the listeners are in place before this side writes;
 * what it returns is iterated as the stream would be. Every writer that sends and then reads its answers uses it.
 */

/**
 * Starts iterating `source` now and returns an iterator over the same items: use it where the stream is opened, before
 * writing to it, and read from it later. An error the stream ends with before the first read is kept for that read
 * (never an unhandled rejection).
 */
export function readFromNow<T>(source: AsyncIterable<T>): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let first: Promise<IteratorResult<T>> | undefined = iterator.next();
  first.catch(() => undefined); // seen by whoever reads first; until then it must not count as unhandled
  const reader: AsyncIterableIterator<T> = {
    next: () => {
      const pending = first;
      first = undefined;
      return pending ?? iterator.next();
    },
    return: async (value?: unknown) => {
      first = undefined;
      return iterator.return !== undefined ? iterator.return(value) : { done: true, value: value as T };
    },
    [Symbol.asyncIterator]: () => reader,
  };
  return reader;
}
