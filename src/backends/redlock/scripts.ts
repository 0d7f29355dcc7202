// Redlock's own scripts, beside the Redis backend's EXTEND and INSPECT that it runs unchanged on each
// node. They share its Lua (owner matching, fences) from lua.ts.
//
// Fences: each node grants max(last + 1, its clock in µs), and the lock's fence (the token) is the
// highest the quorum granted. To save a round trip the client proposes the token: a value above
// the nodes' clocks (it learns how far ahead of its own monotonic clock they are), which a node takes
// when it is above its own candidate and not more than ttl/2 ahead of its clock. Usually every node
// takes it, so every node already records the token; otherwise the nodes behind are raised to it
// (SYNC) before the lock is used. A release keeps the node's fence ("\n<fence>") for the rest of the
// lease's life, so the next grant there goes on above it.

import { clockDigits, FENCE, HOLDER, HOLDER_ONLY, isGranted, isHolder, refuseHuge, SETTLE, wakeOf } from '../redis/lua.js';
import { defineScript, flag, grant } from '../redis/script.js';

/**
 * ACQUIRE_PROPOSED. KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: ttl ms, ARGV[3]: the proposed fence
 * ("0": none), ARGV[4]: the lease's value if the proposal is taken (owner, "\n", proposal). As the
 * Redis backend's ACQUIRE (the fence, -1 - retry-after ms, or 0 when readers of a Redis backend hold
 * the name), with the proposal taken when it is in range.
 */
export const ACQUIRE_PROPOSED = defineScript(
  'acquire',
  `
local lease = KEYS[1]
-- The common cases first, with nothing defined (a function defined is a closure made on every run):
-- a free lock, or one released with its fence kept ("\\n<fence>", a lock taken again and again). The
-- candidate is max(last + 1, the clock in µs); the proposal is taken when it is above it and at most
-- ttl/2 ahead (once the lease and its kept fence are gone, a ttl after the grant, the clock alone is
-- past every fence this node recorded for the name). A taken proposal is written and answered as
-- the strings that came (the value, the ttl, the fence): a Lua number given to redis.call or
-- returned is formatted on the way, and a concatenation is a new string, which five nodes would
-- each pay for on every grant. tonumber() skips the kept value's leading newline.
local value = redis.call('GET', lease)
if not value or string.byte(value) == 10 then
  local t = redis.call('TIME')
  local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local floor = clock
  if value then
    local last = tonumber(value)
    ${refuseHuge('last')}
    if last >= clock then floor = last + 1 end
  end
  local proposed = tonumber(ARGV[3])
  if proposed > floor and proposed <= floor + tonumber(ARGV[2]) * 500 then
    redis.call('SET', lease, ARGV[4], 'PX', ARGV[2])
    return ARGV[3]
  end
  local fence = floor == clock and ${clockDigits('t')} or string.format('%d', floor)
  redis.call('SET', lease, ARGV[1] .. '\\n' .. fence, 'PX', ARGV[2])
  return fence
end
${HOLDER}${SETTLE}${FENCE}
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local settled, last = settle(lease, owner, ttl)
if settled then return settled end
local fence = next_fence(last)
local proposed = tonumber(ARGV[3])
-- As above: at most ttl/2 ahead.
if proposed > fence and proposed <= fence + ttl * 500 then fence = proposed end
redis.call('SET', lease, owner .. '\\n' .. digits(fence), 'PX', ttl)
return fence
`,
  grant,
);

/**
 * RELEASE_KEEP. KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: the lease's value as granted (owner, "\n",
 * the lock's fence; "" when unknown), ARGV[3]: "\n" and that fence. As RELEASE, but the node keeps
 * the lease's fence ("\n<fence>") until the lease would have expired. 1 when the owner's lease was
 * ended, else 0.
 */
export const RELEASE_KEEP = defineScript(
  'release',
  `
local lease, owner = KEYS[1], ARGV[1]
local held = redis.call('GET', lease)
-- The common case, compared whole: this node recorded the lock's fence and no one was refused
-- meanwhile (no mark).
if ${isGranted('held', 'ARGV[2]')} then
  redis.call('SET', lease, ARGV[3], 'KEEPTTL')
  return 1
end
if not held or not ${isHolder('held', 'owner')} then return 0 end
local fence = string.sub(held, #owner + 2)
-- Someone was refused meanwhile (the value ends with the mark "w"): wake them; the fence kept is digits.
if string.byte(held, -1) == 119 then
  fence = string.sub(fence, 1, -2)
  ${wakeOf('lease')}
end
redis.call('SET', lease, '\\n' .. fence, 'KEEPTTL')
return 1
`,
  flag,
);

/** SYNC. KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: token. The owner's lease records the token instead of the node's own fence. */
export const SYNC = defineScript(
  'fence sync',
  `${HOLDER}${HOLDER_ONLY}if tonumber(fence_of(held)) >= tonumber(ARGV[2]) then return 1 end
redis.call('SET', lease, ARGV[1] .. '\\n' .. ARGV[2] .. (is_marked(held) and 'w' or ''), 'KEEPTTL')
return 1
`,
  flag,
);
