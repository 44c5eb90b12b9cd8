import { expect } from "chai";
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { StreamClosedWhileWaitingError, drained } from "../../sdk/net/drain";

/** The two things `drained` reads of a stream: whether it needs a drain, and its 'drain' and 'close' events. */
class FakeStream extends EventTarget {
  writableNeedsDrain = false;
  drain(): void {
    this.writableNeedsDrain = false;
    this.dispatchEvent(new Event("drain"));
  }
  close(error?: Error): void {
    this.dispatchEvent(Object.assign(new Event("close"), { error }));
  }
  listeners(): number {
    return this.added - this.removed;
  }
  private added = 0;
  private removed = 0;
  override addEventListener(...args: Parameters<EventTarget["addEventListener"]>): void {
    this.added++;
    super.addEventListener(...args);
  }
  override removeEventListener(...args: Parameters<EventTarget["removeEventListener"]>): void {
    this.removed++;
    super.removeEventListener(...args);
  }
}

const asStream = (s: FakeStream) => s as unknown as Stream;
const settled = async (p: Promise<void>) => {
  let state = "pending";
  p.then(
    () => (state = "resolved"),
    () => (state = "rejected"),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return state;
};

describe("sdk/net/drain: waiting for a stream's next drain, every time", () => {
  it("resolves at once when the stream takes bytes, else at its next drain, and again at the one after", async () => {
    const stream = new FakeStream();
    expect(await settled(drained(asStream(stream)))).to.equal("resolved");
    for (let round = 0; round < 2; round++) {
      // The second round is what libp2p's own onDrain() gets wrong: it answers with the first drain's promise.
      stream.writableNeedsDrain = true;
      const waiting = drained(asStream(stream));
      expect(await settled(waiting), `round ${round} before the drain`).to.equal("pending");
      stream.drain();
      expect(await settled(waiting), `round ${round} after the drain`).to.equal("resolved");
      expect(stream.listeners()).to.equal(0);
    }
  });

  it("rejects when the stream closes first, and when the signal aborts, leaving no listener behind", async () => {
    const stream = new FakeStream();
    stream.writableNeedsDrain = true;
    const closed = drained(asStream(stream));
    stream.close(new Error("reset by peer"));
    try {
      await closed;
      expect.fail("expected a rejection");
    } catch (error) {
      expect(error).to.be.instanceOf(StreamClosedWhileWaitingError);
      expect((error as Error).message).to.contain("reset by peer");
    }
    const controller = new AbortController();
    const aborted = drained(asStream(stream), controller.signal);
    controller.abort(new Error("gave up"));
    try {
      await aborted;
      expect.fail("expected a rejection");
    } catch (error) {
      expect((error as Error).message).to.equal("gave up");
    }
    expect(stream.listeners()).to.equal(0);
    const already = new AbortController();
    already.abort(new Error("before"));
    expect(await settled(drained(asStream(stream), already.signal))).to.equal("rejected");
  });
});
