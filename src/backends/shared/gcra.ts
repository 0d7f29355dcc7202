// Rate limiting as GCRA (the generic cell rate algorithm, as redis-cell and Redisson's RRateLimiter do
// it): a bucket is one number, its theoretical arrival time (TAT), the moment it would be full again.
// A take of `cost` tokens moves the TAT by cost × T (T = interval / limit, the time one token takes to
// come back) and is allowed while the TAT stays within the burst tolerance τ = burst × T of now.
// Every backend computes exactly this, in one atomic step on its own clock: the memory and file
// backends call `gcra()`, and the Redis script and the PostgreSQL statement are written from it.

/** What one take (or peek) asks of a backend's rate store. */
export interface RateRequest {
  key: string;
  /** Tokens per interval (the sustained rate). */
  limit: number;
  /** The interval, ms. */
  interval: number;
  /** Tokens a full bucket holds (at most this many at once). */
  burst: number;
  /** Tokens this take needs (at most `burst`). */
  cost: number;
  /** Look only: compute the decision, consume nothing. */
  peek: boolean;
}

export interface RateDecision {
  allowed: boolean;
  /** Tokens left after this decision (whole tokens, never negative). */
  remaining: number;
  /** ms until `cost` tokens would be allowed; 0 when allowed. */
  retryAfter: number;
  /** Epoch ms at which the bucket is full again. */
  resetAt: number;
}

/** The optional rate store of a backend: GCRA, atomic on the backend's clock, one round trip a call. */
export interface RateStore {
  take(request: RateRequest): Promise<RateDecision>;
  /** Forgets the bucket: it is full again. */
  reset(key: string): Promise<void>;
}

/** Floating-point slack, so that a bucket refilled to exactly one token counts that token. */
const EPSILON = 1e-6;

/**
 * One GCRA step. `tat` is the stored TAT (epoch ms) or undefined for a full bucket; `now` is epoch ms
 * on the backend's clock. Returns the decision and the TAT to store (undefined: store nothing), which
 * may be dropped once `now` passes it (the bucket is full again).
 */
export function gcra(tat: number | undefined, now: number, r: RateRequest): { decision: RateDecision; tat: number | undefined } {
  const t = r.interval / r.limit;
  const tolerance = t * r.burst;
  const base = Math.max(tat ?? now, now);
  const next = base + t * r.cost;
  const allowed = next - now <= tolerance + EPSILON;
  const after = allowed && !r.peek ? next : base;
  const remaining = Math.max(0, Math.floor((tolerance - (after - now)) / t + EPSILON));
  return {
    decision: {
      allowed,
      remaining,
      retryAfter: allowed ? 0 : Math.max(1, Math.ceil(next - tolerance - now)),
      resetAt: Math.ceil(after),
    },
    tat: allowed && !r.peek ? next : undefined,
  };
}
