// Rate-limiter buckets on Redis: GCRA (backends/shared/gcra.ts) in one script on the server's clock,
// one round trip per take. The bucket key carries the lock name's hash tag (Cluster-safe) and expires
// when the bucket is full again, so a limiter left alone leaves nothing behind.
//
// The key's expiry is the bucket's TAT, rounded up to Redis's ms clock, and its value the rounding
// (the "slack", 0 ≤ slack < 1 ms): TAT − now = PTTL − slack. So the server's clock is read by the
// PTTL the script needs anyway, with no TIME (a table of two strings to parse) on every take, and
// every time a script deals in is relative: the reply is the TAT from now in ns, one integer (not an
// array: a table and a second number cost the script as much as its arithmetic), turned into the
// decision and into epoch ms on the client's clock, as the file backend does.

import type { RateDecision, RateRequest, RateStore } from '../shared/gcra.js';
import { defineScript, integer, type Script } from './script.js';

/**
 * The start of RATE_TAKE and RATE_PEEK: leaves `d`, the bucket's TAT from now in ms (0 for a full
 * bucket, whose key is gone), or errs on a key that is not a bucket.
 */
const TAT_FROM_NOW = `
local ttl = redis.call('PTTL', KEYS[1])
local d = 0
if ttl >= 0 then d = math.max(ttl - tonumber(redis.call('GET', KEYS[1])), 0)
elseif ttl == -1 then return redis.error_reply('ERR locksmith: ' .. KEYS[1] .. ' has no expiry: not a rate bucket') end
`;

/**
 * One GCRA take. KEYS[1] the bucket. ARGV[1] the increment cost × T (ms; T = interval / limit, the
 * time one token takes to come back); ARGV[2] the tolerance τ = burst × T (ms). Replies, in ns
 * rounded up: the TAT after the take, from now (≥ 1), when allowed; -1 - the TAT from now when refused.
 * A key that is not a bucket (no expiry, another type, a value that is no number) is an error, never
 * overwritten.
 */
export const RATE_TAKE = `${TAT_FROM_NOW}local nxt = d + tonumber(ARGV[1])
if nxt > tonumber(ARGV[2]) + 1e-6 then return -1 - math.ceil(d * 1000000) end
local px = math.ceil(nxt)
redis.call('SET', KEYS[1], px - nxt, 'PX', px)
return math.ceil(nxt * 1000000)
`;

/** RATE_TAKE's look without the take: same keys, arguments and replies, the TAT from now moving nothing. */
export const RATE_PEEK = `${TAT_FROM_NOW}if d + tonumber(ARGV[1]) > tonumber(ARGV[2]) + 1e-6 then return -1 - math.ceil(d * 1000000) end
return math.ceil(d * 1000000)
`;

/** Forgets a bucket. KEYS[1] the bucket. */
export const RATE_RESET = `return redis.call('DEL', KEYS[1])`;

/** The reply, as is: the decision needs the request too (see decide). */
const TAKE = defineScript('rate take', RATE_TAKE, integer);
const PEEK = defineScript('rate peek', RATE_PEEK, integer);
const RESET = defineScript('rate reset', RATE_RESET, () => undefined);

const EPSILON = 1e-6;

/** The decision from a reply of RATE_TAKE or RATE_PEEK (see there), for request `r`. */
export function decide(r: RateRequest, reply: number): RateDecision {
  const t = r.interval / r.limit;
  const tolerance = t * r.burst;
  const allowed = reply >= 0;
  // The TAT from now, ms: after the take when allowed, else as it stays. The script rounded it up
  // to the ns, which may cost up to 1e-6 / T of a token: that much slack keeps a whole token whole.
  const after = (allowed ? reply : -1 - reply) / 1_000_000;
  return {
    allowed,
    remaining: Math.max(0, Math.floor((tolerance - after) / t + EPSILON + 1e-6 / t)),
    retryAfter: allowed ? 0 : Math.max(1, Math.ceil(after + t * r.cost - tolerance)),
    resetAt: Math.ceil(Date.now() + after),
  };
}

/** The backend's script call: `key` names the lock in errors. */
type Call = <R>(s: Script<R>, key: string, keys: string[], args: (string | number)[]) => Promise<R>;

/** The rate store of a Redis backend: `call` runs a script (with the backend's timeout), `bucket` names the key. */
export function redisRate(call: Call, bucket: (name: string) => string): RateStore {
  return {
    async take(r: RateRequest) {
      const t = r.interval / r.limit;
      return decide(r, await call(r.peek ? PEEK : TAKE, r.key, [bucket(r.key)], [t * r.cost, t * r.burst]));
    },
    async reset(key: string) {
      await call(RESET, key, [bucket(key)], []);
    },
  };
}
