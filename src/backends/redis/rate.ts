// Rate-limiter buckets on Redis: GCRA (backends/shared/gcra.ts) in one script on the server's clock,
// one round trip per take. The bucket key carries the lock name's hash tag (Cluster-safe) and expires
// when the bucket is full again, so a limiter left alone leaves nothing behind.
//
// The key's expiry is the bucket's TAT, rounded up to Redis's ms clock, and its value the rounding
// (the "slack", 0 ≤ slack < 1 ms): TAT − now = PTTL − slack. So the server's clock is read by the
// PTTL the script needs anyway, with no TIME (a table of two strings to parse) on every take, and
// every time a script deals in is relative: the reply is "µs from now", turned into epoch ms on the
// client's clock, as the file backend does.

import type { RateDecision, RateRequest, RateStore } from '../shared/gcra.js';
import { BadReply, defineScript, integer, type Script } from './script.js';

/**
 * One GCRA take. KEYS[1] the bucket. ARGV[1] T, ms per token (interval / limit); ARGV[2] the
 * tolerance τ = burst × T, ms; ARGV[3] cost. Replies {tokens left, the TAT from now in µs rounded
 * up}: after the take when allowed; when refused, as it stays, with the tokens left as -1 - n.
 * A key that is not a bucket (no expiry, another type, a value that is no number) is an error, never
 * overwritten.
 */
export const RATE_TAKE = `
local ttl = redis.call('PTTL', KEYS[1])
local d = 0
if ttl >= 0 then d = math.max(ttl - tonumber(redis.call('GET', KEYS[1])), 0)
elseif ttl == -1 then return redis.error_reply('ERR locksmith: ' .. KEYS[1] .. ' has no expiry: not a rate bucket') end
local t, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local nxt = d + t * tonumber(ARGV[3])
if nxt > tolerance + 1e-6 then return {-1 - math.floor((tolerance - d) / t + 1e-6), math.ceil(d * 1000)} end
local px = math.ceil(nxt)
redis.call('SET', KEYS[1], px - nxt, 'PX', px)
return {math.floor((tolerance - nxt) / t + 1e-6), math.ceil(nxt * 1000)}
`;

/** RATE_TAKE's look without the take: same keys, arguments and replies, the TAT staying where it is. */
export const RATE_PEEK = `
local ttl = redis.call('PTTL', KEYS[1])
local d = 0
if ttl >= 0 then d = math.max(ttl - tonumber(redis.call('GET', KEYS[1])), 0)
elseif ttl == -1 then return redis.error_reply('ERR locksmith: ' .. KEYS[1] .. ' has no expiry: not a rate bucket') end
local t, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local left = math.floor((tolerance - d) / t + 1e-6)
if d + t * tonumber(ARGV[3]) > tolerance + 1e-6 then left = -1 - left end
return {left, math.ceil(d * 1000)}
`;

/** Forgets a bucket. KEYS[1] the bucket. */
export const RATE_RESET = `return redis.call('DEL', KEYS[1])`;

/** A reply of RATE_TAKE or RATE_PEEK, as is: the decision needs the request too (see decide). */
function pair(reply: unknown): [number, number] {
  if (!Array.isArray(reply) || reply.length !== 2) throw new BadReply(reply);
  return [integer(reply[0]), integer(reply[1])];
}

const TAKE = defineScript('rate take', RATE_TAKE, pair);
const PEEK = defineScript('rate peek', RATE_PEEK, pair);
const RESET = defineScript('rate reset', RATE_RESET, () => undefined);

/** The decision from a reply of RATE_TAKE or RATE_PEEK (see there), for request `r`. */
export function decide(r: RateRequest, [left, tat]: [number, number]): RateDecision {
  const allowed = left >= 0;
  // The TAT from now, ms (rounded up to the µs by the script: a retry is never early).
  const after = tat / 1000;
  const t = r.interval / r.limit;
  return {
    allowed,
    remaining: Math.max(0, allowed ? left : -1 - left),
    retryAfter: allowed ? 0 : Math.max(1, Math.ceil(after + t * r.cost - t * r.burst)),
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
      return decide(r, await call(r.peek ? PEEK : TAKE, r.key, [bucket(r.key)], [t, t * r.burst, r.cost]));
    },
    async reset(key: string) {
      await call(RESET, key, [bucket(key)], []);
    },
  };
}
