// The exclusive lock's scripts, one mode each: the common path of every lock. Each settles in as few
// commands as it can: every command, key and argument is paid on each call, and the server runs
// scripts one at a time. The lease value's forms are described in lua.ts.

import { clockDigits, FENCE, HOLDER, HOLDER_ONLY, isGranted, isHolder, SETTLE, wakeOf } from './lua.js';
import { BadReply, defineScript, fence, flag, grant, integer } from './script.js';

/**
 * ACQUIRE (plain exclusive). KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: ttl ms. Returns the fence when
 * granted (as digits when the lock was free; the holder asking again keeps its fence, with a fresh ttl); -1 - retry-after ms when
 * another holds it (and marks the lease, so its release wakes us); 0 when readers hold it (ask again
 * with every key: ACQUIRE_ANY).
 */
export const ACQUIRE = defineScript(
  'acquire',
  `
local lease, owner = KEYS[1], ARGV[1]
-- The common case first, with nothing defined: a free lock is TIME and SET NX. A free lock has no
-- fence to go on (a release deletes the lease), so its fence is the clock in µs, written from TIME's
-- two strings and replied as digits: no number is formatted. Anything else is settled below.
local t = redis.call('TIME')
local fence = ${clockDigits('t')}
if redis.call('SET', lease, owner .. '\\n' .. fence, 'NX', 'PX', ARGV[2]) then return fence end
${HOLDER}${SETTLE}${FENCE}
local settled, last = settle(lease, owner, ARGV[2])
if settled then return settled end
-- The TIME read above serves: nothing else runs on the server during a script.
local fence = next_fence(last, t)
redis.call('SET', lease, owner .. '\\n' .. digits(fence), 'PX', ARGV[2])
return fence
`,
  grant,
);

/**
 * RELEASE (exclusive holder). KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: the lease's value as granted
 * (owner, newline, fence; "" when unknown). 1 when its lease was removed, else 0.
 */
export const RELEASE = defineScript(
  'release',
  `
local lease, owner = KEYS[1], ARGV[1]
local held = redis.call('GET', lease)
-- Compared whole first (the lease as it was granted, ARGV[2]), else the owner check.
if not ${isGranted('held', 'ARGV[2]')} and (not held or not ${isHolder('held', 'owner')}) then return 0 end
redis.call('DEL', lease)
-- Someone was refused meanwhile (the value ends with the mark "w"): wake them.
if string.byte(held, -1) == 119 then ${wakeOf('lease')} end
return 1
`,
  flag,
);

/**
 * HANDOVER (exclusive holder to a waiter of the same client). KEYS[1]: lease. ARGV[1]: owner,
 * ARGV[2]: next owner, ARGV[3]: its ttl ms. The releasing client has a waiter refused on this lock
 * that would ask again at once: granting it here, as its own acquire would (next fence, its ttl on the
 * server's clock), saves that acquire a script run and its reply a wait. Nobody else could use the
 * lock meanwhile, so nobody is woken; the mark stays for the next release. A waiter that gave up
 * instead releases it (or it expires by its ttl). Returns the next owner's fence, or 0 when the owner
 * held nothing.
 */
export const HANDOVER = defineScript(
  'release',
  `${HOLDER}${FENCE}${HOLDER_ONLY}
local fence = next_fence(fence_of(held))
redis.call('SET', lease, ARGV[2] .. '\\n' .. digits(fence) .. (is_marked(held) and 'w' or ''), 'PX', ARGV[3])
return fence
`,
  (reply) => (integer(reply) === 0 ? null : fence(reply)),
);

/** EXTEND (exclusive holder). KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: ttl ms. 1 when renewed, else 0. */
export const EXTEND = defineScript(
  'extend',
  `${HOLDER}${HOLDER_ONLY}
return redis.call('PEXPIRE', lease, ARGV[2])
`,
  flag,
);

export interface Holder {
  owner: string;
  fence: bigint;
  /** ms left on the server's clock. */
  remaining: number;
}

/**
 * INSPECT. KEYS[1]: lease, KEYS[2]: shared. Returns {} when free; {"x", value, remaining ms} for an
 * exclusive holder (the value is parsed here, so a malformed one is an error, never "free"); or
 * {"s", owner1, remaining ms 1, fence1, ...} for live readers. Remaining time, not an instant: no
 * clocks are compared.
 */
export const INSPECT = defineScript(
  'inspect',
  `
local lease, shared = KEYS[1], KEYS[2]
local held = redis.call('GET', lease)
if not held or string.byte(held) == 10 then return {} end
if held ~= 's' and held ~= 'sw' then return {'x', held, redis.call('PTTL', lease)} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {'s'}
local entries = redis.call('HGETALL', shared)
for i = 1, #entries, 2 do
  local v = entries[i + 1]
  local colon = string.find(v, ':', 1, true)
  local left = colon and tonumber(string.sub(v, 1, colon - 1)) - now
  if not left then return {'?', v} end
  if left > 0 then
    out[#out + 1] = entries[i]
    out[#out + 1] = left
    out[#out + 1] = string.sub(v, colon + 1)
  end
end
return out
`,
  (reply): { mode: 'exclusive' | 'shared'; holders: Holder[] } | null => {
    if (!Array.isArray(reply)) throw new BadReply(reply);
    if (reply.length === 0) return null;
    if (reply[0] === 'x' && reply.length === 3) {
      const parsed = /^([\s\S]+)\n(\d+)w?$/.exec(String(reply[1]));
      const remaining = integer(reply[2]);
      if (!parsed || remaining < 0) throw new BadReply(reply);
      return { mode: 'exclusive', holders: [{ owner: parsed[1]!, fence: fence(parsed[2]), remaining }] };
    }
    if (reply[0] !== 's' || reply.length % 3 !== 1) throw new BadReply(reply);
    const holders: Holder[] = [];
    for (let i = 1; i < reply.length; i += 3)
      holders.push({ owner: String(reply[i]), remaining: integer(reply[i + 1]), fence: fence(reply[i + 2]) });
    return holders.length === 0 ? null : { mode: 'shared', holders };
  },
);

/** CACHE_GET. KEYS[1]: entry. The stampede guard's store: a JSON entry, or nil. */
export const CACHE_GET = defineScript('cache get', `return redis.call('GET', KEYS[1])`, (reply) => {
  if (typeof reply === 'string' || reply === null) return reply;
  if (Buffer.isBuffer(reply)) return reply.toString();
  throw new BadReply(reply);
});

/** CACHE_SET. KEYS[1]: entry. ARGV[1]: JSON, ARGV[2]: ttl ms. */
export const CACHE_SET = defineScript('cache set', `return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])`, () => undefined);
