/**
 * Per-key token buckets: how the edge node bounds what one peer (or one recipient) may ask of it. A key starts with
 * `burst` tokens and earns `perSecond` more a second up to `burst`; a request takes one, and is refused without one.
 * Memory is bounded: past `maxKeys`, the key used longest ago is forgotten (it comes back with a full bucket, which
 * is only as generous as a new peer).
 */

/** A rate: sustained requests a second and the burst allowed on top. */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/** Keys remembered at most (about 100 bytes each). */
export const DEFAULT_MAX_KEYS = 10_000;

/** A refused configuration: a limit that is not a positive finite rate and a burst of at least one. */
export class RateLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RateLimitError";
  }
}

interface Bucket {
  tokens: number;
  at: number; // ms: when `tokens` was counted
}

/** Token buckets by key (a peer id, a recipient address). */
export class RateLimiter {
  readonly limit: RateLimit;
  private readonly buckets = new Map<string, Bucket>(); // oldest use first
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(limit: RateLimit, options: { now?: () => number; maxKeys?: number } = {}) {
    if (!(limit.perSecond > 0) || !Number.isFinite(limit.perSecond) || !(limit.burst >= 1)) {
      throw new RateLimitError(
        `RateLimiter: expected perSecond > 0 and burst >= 1, got ${limit.perSecond} and ${limit.burst}`,
      );
    }
    this.limit = limit;
    this.now = options.now ?? Date.now;
    this.maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
  }

  /** Takes a token for `key`; false (and nothing taken) when its bucket is empty. */
  take(key: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    const earned = (Math.max(0, now - bucket.at) / 1000) * this.limit.perSecond;
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + earned);
    bucket.at = now;
    // Re-inserted, so the map's order stays oldest use first.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.buckets.size;
  }
}
