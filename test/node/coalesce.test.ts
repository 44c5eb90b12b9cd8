import { expect } from "chai";
import { CoalescedRun } from "../../node/coalesce";

describe("node/coalesce: one refresh at a time, never a stale one", () => {
  it("answers a call made during a run with the next run, shared by every such call", async () => {
    const started: number[] = [];
    const releases: (() => void)[] = [];
    const runs = new CoalescedRun(async () => {
      started.push(started.length + 1);
      await new Promise<void>((resolve) => releases.push(resolve));
    });
    const first = runs.call();
    const second = runs.call(); // during run 1: must wait for a run that starts after it
    const third = runs.call();
    expect(second).to.equal(third);
    expect(started).to.deep.equal([1]);
    let secondDone = false;
    void second.then(() => (secondDone = true));
    releases[0]();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).to.deep.equal([1, 2]); // run 2 started only after run 1 ended
    expect(secondDone).to.equal(false);
    releases[1]();
    await second;
    expect(started).to.deep.equal([1, 2]);
    expect(runs.inFlight).to.equal(undefined);
  });

  it("passes a run's error to its callers and runs again on the next call", async () => {
    let fail = true;
    const runs = new CoalescedRun(async () => {
      if (fail) throw new Error("chain unreachable");
    });
    await runs.call().then(
      () => expect.fail("expected the run's error"),
      (error: Error) => expect(error.message).to.equal("chain unreachable"),
    );
    fail = false;
    await runs.call();
  });
});
