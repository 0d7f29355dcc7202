// Rate-limiter buckets on Redis: GCRA (backends/shared/gcra.ts) in one script on the server's clock,
// one round trip per take. The bucket key carries the lock name's hash tag (Cluster-safe) and expires
// when the bucket is full again, so a limiter left alone leaves nothing behind.

import type { RateDecision, RateRequest, RateStore } from '../shared/gcra.js';
import { BadReply, defineScript, type Script } from './script.js';

/**
 * One GCRA step. KEYS[1] the bucket: its TAT, epoch ms on the server's clock, as a decimal string.
 * ARGV[1] T, ms per token; ARGV[2] the tolerance τ = burst × T, ms; ARGV[3] cost; ARGV[4] '1' to peek.
 * Replies {allowed 1|0, remaining tokens, retryAfter ms, resetAt epoch ms}.
 */
export const RATE_TAKE = `
local t = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local base = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0, now)
local nxt = base + t * cost
local eps = 1e-6
local allowed = nxt - now <= tolerance + eps
local after = base
if allowed and ARGV[4] ~= '1' then
  after = nxt
  -- A number argument goes over as its exact decimal (%.17g), with no string.format to pay for.
  redis.call('SET', KEYS[1], nxt, 'PX', math.max(1, math.ceil(nxt - now)))
end
local remaining = math.max(0, math.floor((tolerance - (after - now)) / t + eps))
local retry = 0
if not allowed then retry = math.max(1, math.ceil(nxt - tolerance - now)) end
return {allowed and 1 or 0, remaining, retry, math.ceil(after)}
`;

/** Forgets a bucket. KEYS[1] the bucket. */
export const RATE_RESET = `return redis.call('DEL', KEYS[1])`;

function decode(reply: unknown): RateDecision {
  if (!Array.isArray(reply) || reply.length !== 4) throw new BadReply(reply);
  const [allowed, remaining, retryAfter, resetAt] = reply.map(Number) as [number, number, number, number];
  return { allowed: allowed === 1, remaining, retryAfter, resetAt };
}

const TAKE = defineScript('rate take', RATE_TAKE, decode);
const RESET = defineScript('rate reset', RATE_RESET, () => undefined);

/** The backend's script call: `key` names the lock in errors. */
type Call = <R>(s: Script<R>, key: string, keys: string[], args: (string | number)[]) => Promise<R>;

/** The rate store of a Redis backend: `call` runs a script (with the backend's timeout), `bucket` names the key. */
export function redisRate(call: Call, bucket: (name: string) => string): RateStore {
  return {
    take(r: RateRequest) {
      const t = r.interval / r.limit;
      return call(TAKE, r.key, [bucket(r.key)], [t, t * r.burst, r.cost, r.peek ? '1' : '0']);
    },
    async reset(key: string) {
      await call(RESET, key, [bucket(key)], []);
    },
  };
}
