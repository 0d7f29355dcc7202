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

import { clockDigits, FENCE, HOLDER, HOLDER_ONLY, isHolder, refuseHuge, SETTLE, wakeOf } from '../redis/lua.js';
import { defineScript, flag, grant } from '../redis/script.js';

/**
 * ACQUIRE_PROPOSED. KEYS[1]: lease. ARGV[1]: owner, ARGV[2]: ttl ms, ARGV[3]: the proposed fence
 * ("0": none). As the Redis backend's ACQUIRE (the fence, -1 - retry-after ms, or 0 when readers of a
 * Redis backend hold the name), with the proposal taken when it is in range.
 */
export const ACQUIRE_PROPOSED = defineScript(
  'acquire',
  `
local lease, owner, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
-- The common cases first, with nothing defined (a function defined is a closure made on every run):
-- a free lock, or one released with its fence kept ("\\n<fence>", a lock taken again and again). The
-- candidate is max(last + 1, the clock in µs); the proposal is taken when it is above it and at most
-- ttl/2 ahead (once the lease and its kept fence are gone, a ttl after the grant, the clock alone is
-- past every fence this node recorded for the name). The proposal is written as it came, the clock
-- from TIME's two strings: a number is formatted only when the kept fence is ahead of the clock.
local value = redis.call('GET', lease)
if not value or string.byte(value) == 10 then
  local t = redis.call('TIME')
  local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local floor = clock
  if value then
    local last = tonumber(string.sub(value, 2))
    ${refuseHuge('last')}
    if last >= clock then floor = last + 1 end
  end
  local proposed = tonumber(ARGV[3])
  local fence = ARGV[3]
  if not (proposed > floor and proposed <= floor + ttl * 500) then
    fence = floor == clock and ${clockDigits('t')} or string.format('%d', floor)
  end
  redis.call('SET', lease, owner .. '\\n' .. fence, 'PX', ttl)
  return fence
end
${HOLDER}${SETTLE}${FENCE}
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
 * RELEASE_KEEP. KEYS[1]: lease. ARGV[1]: owner. As RELEASE, but the node keeps the lease's fence
 * ("\n<fence>") until the lease would have expired. 1 when the owner's lease was ended, else 0.
 */
export const RELEASE_KEEP = defineScript(
  'release',
  `
local lease, owner = KEYS[1], ARGV[1]
local held = redis.call('GET', lease)
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
