// The scripts for everything but a plain exclusive lock: readers and semaphore permits, writers that
// announce themselves (writer preference), and fair mode's line of waiters. Shared leases keep
// per-holder expiries in the server's time (TIME), never the client's.

import { CLOCK, FENCE, HOLDER } from './lua.js';
import { BadReply, defineScript, flag, grant } from './script.js';

/**
 * ACQUIRE_ANY. KEYS: lease, waiting, shared, intents, and in fair mode queue, queue expiries.
 * ARGV: owner, ttl ms, mode ("x" or "s"), limit (0: none), writer preference ("1"|"0"), intent ms (0:
 * none), fair queue timeout ms (0: not fair; negative: fair, but do not join the line). Returns the
 * fence when granted, -1 - retry-after ms when refused (so -1: unknown).
 */
export const ACQUIRE_ANY = defineScript(
  'acquire',
  `${HOLDER}${FENCE}${CLOCK}
local lease, waiting, shared, intents, queue, queue_exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local owner, ttl, want = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local limit, writer_pref, intent_ms, queue_ms = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
local fair = queue_ms ~= 0 and want == 'x'

local held = redis.call('GET', lease)
local last
if held and string.byte(held) == 10 then
  last, held = string.sub(held, 2), nil -- released (Redlock): free
end
local readers = held == 's' or held == 'sw'

-- Fair mode: exclusive waiters line up in a sorted set by arrival time (server microseconds), each
-- with an expiry it refreshes on every try, so a waiter that died leaves the line within queue_ms.
local function queue_up()
  if not fair or queue_ms < 0 then return end
  local t = redis.call('TIME')
  redis.call('ZADD', queue, 'NX', t[1] .. string.format('%06d', tonumber(t[2])), owner)
  redis.call('HSET', queue_exp, owner, now_ms() + queue_ms)
  redis.call('PEXPIRE', queue, queue_ms * 2)
  redis.call('PEXPIRE', queue_exp, queue_ms * 2)
end

-- Whether nobody live is ahead of owner; waiters that stopped refreshing their place are dropped.
local function first_in_line()
  local now = now_ms()
  while true do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head or head == owner then return true end
    if tonumber(redis.call('HGET', queue_exp, head) or '0') > now then return false end
    redis.call('ZREM', queue, head)
    redis.call('HDEL', queue_exp, head)
  end
end

-- Every refusal leaves a mark, so the release that frees the lock wakes someone: on the lease when
-- it is ours, else (no lease) in the waiting key, for as long as this request's ttl, which the next
-- grant moves onto its lease. A foreign value is left as it is.
local function refuse(retry)
  if not held then
    redis.call('SET', waiting, '1', 'PX', ttl)
  elseif (readers or fence_of(held)) and not is_marked(held) then
    redis.call('SET', lease, held .. 'w', 'KEEPTTL')
  end
  queue_up()
  -- retry < 0: unknown (-1). PTTL is 0 in the lease's last ms, which is "retry in 1 ms", not unknown.
  if retry < 0 then return -1 end
  return -1 - math.max(retry, 1)
end

-- A refused writer tells writer-preferring readers to hold back, for intent_ms unless it retries.
local function announce()
  if intent_ms > 0 then
    redis.call('HSET', intents, owner, now_ms() + intent_ms)
    redis.call('PEXPIRE', intents, intent_ms * 2)
  end
end

-- A mark waiting for a lease: taken by this grant.
local function marked()
  return redis.call('DEL', waiting) == 1 or (held and is_marked(held))
end

if want == 'x' then
  if held and is_holder(held, owner) then
    -- The same owner asking again gets its lease back: same fence, fresh ttl.
    redis.call('PEXPIRE', lease, ttl)
    return tonumber(fence_of(held))
  end
  if fair and not first_in_line() then
    announce()
    return refuse(-1)
  end
  if held and not readers then
    announce()
    return refuse(redis.call('PTTL', lease))
  end
  if readers then
    -- The readers' marker lives as long as the longest reader lease, so look at the readers.
    local now = now_ms()
    local count, soonest = scan(shared, '', now)
    if count > 0 then
      announce()
      return refuse(soonest - now)
    end
  end
  local fence = next_fence(last)
  redis.call('SET', lease, owner .. '\\n' .. digits(fence) .. (marked() and 'w' or ''), 'PX', ttl)
  if intent_ms > 0 then redis.call('HDEL', intents, owner) end
  if fair then
    redis.call('ZREM', queue, owner)
    redis.call('HDEL', queue_exp, owner)
  end
  return fence
end

-- Shared: readers or semaphore permits, each with its own expiry in the hash.
if held and not readers then return refuse(redis.call('PTTL', lease)) end
local now = now_ms()
local count, soonest, fence = scan(shared, owner, now)
if not fence then
  if writer_pref then
    local writers, writer_soonest = scan(intents, '', now)
    if writers > 0 then return refuse(writer_soonest - now) end
  end
  if limit > 0 and count >= limit then return refuse(soonest - now) end
  fence = digits(next_fence(nil))
end
redis.call('HSET', shared, owner, (now + ttl) .. ':' .. fence)
if redis.call('PTTL', shared) < ttl then redis.call('PEXPIRE', shared, ttl) end
local marker = marked() and 'sw' or 's'
if redis.call('PTTL', lease) < ttl then
  redis.call('SET', lease, marker, 'PX', ttl)
elseif marker ~= held then
  redis.call('SET', lease, marker, 'KEEPTTL')
end
return tonumber(fence)
`,
  (reply) => {
    const g = grant(reply);
    if (g.granted === 'long') throw new BadReply(reply);
    return g;
  },
);

/**
 * RELEASE_ANY. KEYS: lease, waiting, shared, intents, and in fair mode queue, queue expiries. ARGV:
 * owner. Ends the owner's lease (exclusive or shared) and withdraws its announced intent and its place
 * in line. Returns 1 when a live lease of the owner was removed, else 0. When anything changed and
 * someone was refused meanwhile, publishes the lease key on the wake channel.
 */
export const RELEASE_ANY = defineScript(
  'release',
  `${HOLDER}
local lease, waiting, shared, intents, queue, queue_exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local owner = ARGV[1]
local held = redis.call('GET', lease)
local released, changed = 0, false
if held and is_holder(held, owner) then
  redis.call('DEL', lease)
  released, changed = 1, true
end
if redis.call('HDEL', intents, owner) == 1 then changed = true end
if queue and redis.call('ZREM', queue, owner) == 1 then
  redis.call('HDEL', queue_exp, owner)
  changed = true
end
if not held or held == 's' or held == 'sw' then
  local value = redis.call('HGET', shared, owner)
  if value then
    redis.call('HDEL', shared, owner)
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local colon = string.find(value, ':', 1, true)
    if colon and tonumber(string.sub(value, 1, colon - 1)) > now then released, changed = 1, true end
    if redis.call('HLEN', shared) == 0 then redis.call('DEL', lease) end
  end
end
if changed and ((held and is_marked(held)) or redis.call('DEL', waiting) == 1) then wake(lease) end
return released
`,
  flag,
);

/** EXTEND_SHARED. KEYS: lease, shared. ARGV: owner, ttl ms. 1 when the owner's live shared lease was renewed, else 0. */
export const EXTEND_SHARED = defineScript(
  'extend',
  `${CLOCK}
local lease, shared = KEYS[1], KEYS[2]
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local value = redis.call('HGET', shared, owner)
if not value then return 0 end
local now = now_ms()
local colon = string.find(value, ':', 1, true)
if not colon or tonumber(string.sub(value, 1, colon - 1)) <= now then
  redis.call('HDEL', shared, owner)
  return 0
end
redis.call('HSET', shared, owner, (now + ttl) .. ':' .. string.sub(value, colon + 1))
if redis.call('PTTL', shared) < ttl then redis.call('PEXPIRE', shared, ttl) end
if redis.call('PTTL', lease) < ttl then
  -- The readers' marker, unless a writer's lease took its place (then this reader is not counted).
  local held = redis.call('GET', lease)
  if not held or held == 's' or held == 'sw' then redis.call('SET', lease, held or 's', 'PX', ttl) end
end
return 1
`,
  flag,
);
