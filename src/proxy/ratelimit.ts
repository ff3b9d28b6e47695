/**
 * Per-agent request rate limit of the host proxy: a token bucket per agent id (refilled at
 * `ratePerSec`, holding at most `burst`). O(1) per request, no timers: a bucket is topped up
 * lazily from the elapsed time when it is next used. Buckets idle for a minute are dropped
 * so a client cycling through agent ids cannot grow the map without bound.
 */
export interface RateLimitOptions {
  /** sustained requests per second per agent (default 200; SUBSTRATE_PROXY_RATE) */
  ratePerSec?: number;
  /** bucket size (default 2 × rate) */
  burst?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly ratePerSec: number;
  readonly burst: number;
  private buckets = new Map<string, Bucket>();
  private lastSweep = performance.now();

  constructor(o: RateLimitOptions = {}) {
    this.ratePerSec = o.ratePerSec ?? (Number(process.env.SUBSTRATE_PROXY_RATE) || 200);
    this.burst = o.burst ?? this.ratePerSec * 2;
  }

  /** Take one token: 0 when admitted, else the ms until one is available. */
  take(key: string, now = performance.now()): number {
    if (now - this.lastSweep > 60_000) {
      for (const [k, b] of this.buckets) if (now - b.at > 60_000) this.buckets.delete(k);
      this.lastSweep = now;
    }
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSec);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return ((1 - b.tokens) / this.ratePerSec) * 1000;
  }
}
