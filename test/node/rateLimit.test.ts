import { expect } from "chai";
import { RateLimitError, RateLimiter } from "../../node/rateLimit";

describe("node/rateLimit: token buckets by key", () => {
  it("allows the burst at once, then one request per 1/perSecond seconds, per key", () => {
    let now = 1_000_000;
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 }, { now: () => now });
    expect([1, 2, 3, 4].map(() => limiter.take("a"))).to.deep.equal([true, true, true, false]);
    expect(limiter.take("b"), "another key has its own bucket").to.equal(true);
    now += 499;
    expect(limiter.take("a"), "not yet one token earned").to.equal(false);
    now += 1;
    expect(limiter.take("a"), "one token after 500 ms").to.equal(true);
    expect(limiter.take("a")).to.equal(false);
    now += 60_000;
    expect(
      [1, 2, 3, 4].map(() => limiter.take("a")),
      "refills up to the burst, not beyond",
    ).to.deep.equal([true, true, true, false]);
  });

  it("a refused request takes nothing: a peer that keeps asking is served again at the rate", () => {
    let now = 0;
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, { now: () => now });
    expect(limiter.take("p")).to.equal(true);
    for (let i = 0; i < 10; i++) expect(limiter.take("p")).to.equal(false);
    now += 1_000;
    expect(limiter.take("p")).to.equal(true);
  });

  it("remembers at most maxKeys keys, forgetting the one used longest ago", () => {
    const now = 0;
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, { now: () => now, maxKeys: 3 });
    for (const key of ["a", "b", "c"]) expect(limiter.take(key)).to.equal(true);
    expect(limiter.take("a")).to.equal(false); // a is now the most recent use
    expect(limiter.take("d")).to.equal(true); // b, used longest ago, is forgotten
    expect(limiter.size).to.equal(3);
    expect(limiter.take("c")).to.equal(false);
    expect(limiter.take("b"), "a forgotten key starts full again").to.equal(true);
  });

  it("refuses a rate that is not positive and finite, and a burst below one", () => {
    for (const limit of [
      { perSecond: 0, burst: 1 },
      { perSecond: -1, burst: 1 },
      { perSecond: Number.NaN, burst: 1 },
      { perSecond: Number.POSITIVE_INFINITY, burst: 1 },
      { perSecond: 1, burst: 0.5 },
    ]) {
      expect(() => new RateLimiter(limit), JSON.stringify(limit)).to.throw(RateLimitError);
    }
  });
});
