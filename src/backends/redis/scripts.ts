// The Redis backend's verbs, one Lua script each, so every check-and-set is atomic on the server.
// Each lock name has up to seven keys sharing one {hash tag}, so they live in one Cluster slot:
//   lease   string with PX ttl, expired by Redis itself: "<owner>\n<fence>" for the exclusive
//           holder, or "s" while readers hold it (so one SET NX tells an exclusive acquirer it is free)
//   shared  hash "<owner>" → "<expires ms>:<fence>": readers / semaphore permits, expired by scan
//   intents hash "<owner>" → "<expires ms>": writers waiting under writer preference
//   fence   string counter; missing means "seed from the server clock", so it never goes back
//   waiting string flag, set by refused attempts: a release publishes a wake-up only when it is there
//   queue, queue-exp  fair mode only: waiting owners by arrival, and when each one's place lapses
// Each script settles its common case (a plain exclusive lock) first, in as few commands as it can,
// before it defines anything the other cases need: every command and every Lua closure is paid on
// each call, and the server runs scripts one at a time. Shared leases keep per-holder expiries in the
// server's time (TIME), never the client's. Redlock runs the same scripts on each of its nodes.
//
// An owner is any non-empty string, newlines included, so "<owner>\n<fence>" is split at its LAST
// newline (a fence is digits only): comparing only a prefix would let owner "a" match holder "a\nb".

/**
 * The next fence, given the counter's INCR when the caller already made it. A missing counter (first
 * use, or a server that lost its data) starts from the server clock in microseconds, so fences keep
 * rising across such a loss while the clock does: each increment takes a script run of its own,
 * longer than a microsecond, so the count can never pass the clock. The counter expires a week after
 * it was seeded, and is then seeded again, higher.
 */
const NEXT_FENCE = `
local function next_fence(key, incremented)
  local fence = incremented or redis.call('INCR', key)
  if fence == 1 then
    local t = redis.call('TIME')
    -- A string argument: Lua would print a 16-digit number in exponent form.
    fence = redis.call('INCRBY', key, t[1] .. string.format('%06d', tonumber(t[2])))
    redis.call('PEXPIRE', key, 604800000)
  end
  return string.format('%d', fence)
end
`;

/** Whether an exclusive lease value `held` belongs to `owner` (see the note on owners above). */
const IS_HOLDER = `
local function is_holder(held, owner)
  local n = #owner + 1
  return string.sub(held, 1, n) == owner .. '\\n' and not string.find(held, '\\n', n + 1, true)
end
`;

/** Server time in ms, and a scan of a holders hash that drops expired entries. Slow paths only. */
const CLOCK = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Live entries of a hash of "<expires ms>[:<fence>]": count, soonest expiry, and field's value.
local function scan(hash, field, now)
  local count, soonest, mine = 0, nil, nil
  local entries = redis.call('HGETALL', hash)
  for i = 1, #entries, 2 do
    local v = entries[i + 1]
    local sep = string.find(v, ':', 1, true)
    local expires = tonumber(sep and string.sub(v, 1, sep - 1) or v)
    if expires <= now then
      redis.call('HDEL', hash, entries[i])
    else
      count = count + 1
      if soonest == nil or expires < soonest then soonest = expires end
      if entries[i] == field then mine = sep and string.sub(v, sep + 1) or '' end
    end
  end
  return count, soonest, mine
end
`;

/** How long the waiting flag outlives the last refusal: longer than any waiter sleeps between tries. */
export const WAITING_FLAG_MS = 10_000;

/**
 * ACQUIRE. KEYS: lease, fence, waiting, and unless the request is plain, shared, intents, and for
 * fair mode queue, queue expiries. ARGV: owner, ttl ms, and optionally mode ("x" by default, or "s"),
 * limit (0: none), writer preference ("1"|"0"), intent ms (0: none), fair queue timeout ms (0: not
 * fair; negative: fair, but do not join the line). A plain exclusive request sends owner and ttl and
 * the first three keys only: every key and argument is a string the server makes on each call.
 * Returns the fence (a positive integer) when granted; when refused, -1 - retry-after ms (so 0 means
 * unknown); the string "keys" when a plain request met readers (it is sent again with every key).
 */
export const ACQUIRE = `
local lease, fence_key, waiting = KEYS[1], KEYS[2], KEYS[3]
local owner, ttl, want = ARGV[1], tonumber(ARGV[2]), ARGV[3] or 'x'

-- The common case, inline: a plain exclusive request on a free lock is INCR + SET NX and nothing
-- else. The fence is taken before the SET can say whether the lock is free; a refusal leaves a gap
-- in the fences, which need only rise. A counter just created (INCR gave 1) is seeded just below.
-- Fences leave as integer replies: Lua holds them as doubles, exact below 2^53 (the clock seed is
-- about 2^51 today), and a number is cheaper to reply than a table.
local fence, incremented
if want == 'x' and not ARGV[4] then
  incremented = redis.call('INCR', fence_key)
  if incremented > 1 then
    fence = string.format('%d', incremented)
    if redis.call('SET', lease, owner .. '\\n' .. fence, 'NX', 'PX', ttl) then return incremented end
    -- Refused by another exclusive holder, the common refusal of a contended lock: settled here
    -- too, as below, without defining what the other cases need. The holder itself asking again
    -- and the readers' marker go the long way.
    local held = redis.call('GET', lease)
    if held and held ~= 's' and string.sub(held, 1, #owner + 1) ~= owner .. '\\n' then
      redis.call('SET', waiting, '1', 'PX', ${WAITING_FLAG_MS})
      return -1 - math.max(redis.call('PTTL', lease), -1)
    end
  end
end
${NEXT_FENCE}
-- Seed a counter just created now, whatever this request's outcome, or the next INCR would give 2.
if incremented == 1 then fence = next_fence(fence_key, 1) end
local shared, intents, queue, queue_exp = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local limit, writer_pref, intent_ms = tonumber(ARGV[4] or '0'), ARGV[5] == '1', tonumber(ARGV[6] or '0')
local queue_ms = tonumber(ARGV[7] or '0')
local fair = queue_ms ~= 0 and want == 'x'
${IS_HOLDER}${CLOCK}
-- Fair mode: exclusive waiters line up in a sorted set by arrival time (server microseconds), each
-- with an expiry it refreshes on every try, so a waiter that died leaves the line within queue_ms.
-- A negative queue_ms is a one-off try: it respects the line but must not take a place in it.
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

-- Every refusal leaves the flag, so the release that frees the lock knows to wake someone.
local function refuse(retry)
  redis.call('SET', waiting, '1', 'PX', ${WAITING_FLAG_MS})
  queue_up()
  return -1 - math.max(retry, -1)
end

-- A refused writer tells writer-preferring readers to hold back, for intent_ms unless it retries.
local function announce()
  if intent_ms > 0 then
    redis.call('HSET', intents, owner, now_ms() + intent_ms)
    redis.call('PEXPIRE', intents, intent_ms * 2)
  end
end

local held = redis.call('GET', lease)
if want == 'x' then
  if held and is_holder(held, owner) then
    -- The same owner asking again gets its lease back: same fence, fresh ttl.
    redis.call('PEXPIRE', lease, ttl)
    return tonumber(string.sub(held, #owner + 2))
  end
  if fair and not first_in_line() then
    announce()
    return refuse(-1)
  end
  if held and held ~= 's' then
    announce()
    return refuse(redis.call('PTTL', lease))
  end
  if held then
    -- The readers' marker lives as long as the longest reader lease, so look at the readers.
    if not shared then return 'keys' end
    local now = now_ms()
    local count, soonest = scan(shared, '', now)
    if count > 0 then
      announce()
      return refuse(soonest - now)
    end
  end
  fence = fence or next_fence(fence_key)
  redis.call('SET', lease, owner .. '\\n' .. fence, 'PX', ttl)
  if intent_ms > 0 then redis.call('HDEL', intents, owner) end
  if fair then
    redis.call('ZREM', queue, owner)
    redis.call('HDEL', queue_exp, owner)
  end
  return tonumber(fence)
end

-- Shared: readers or semaphore permits, each with its own expiry in the hash.
if held and held ~= 's' then return refuse(redis.call('PTTL', lease)) end
local now = now_ms()
local count, soonest, mine = scan(shared, owner, now)
fence = mine
if not fence then
  if writer_pref then
    local writers, writer_soonest = scan(intents, '', now)
    if writers > 0 then return refuse(writer_soonest - now) end
  end
  if limit > 0 and count >= limit then return refuse(soonest - now) end
  fence = next_fence(fence_key)
end
redis.call('HSET', shared, owner, (now + ttl) .. ':' .. fence)
if redis.call('PTTL', shared) < ttl then redis.call('PEXPIRE', shared, ttl) end
if redis.call('PTTL', lease) < ttl then redis.call('SET', lease, 's', 'PX', ttl) end
return tonumber(fence)
`;

/** EXTEND. KEYS: lease, shared. ARGV: owner, ttl ms. Returns 1 when renewed, 0 when the owner holds no live lease. */
export const EXTEND = `
local lease, shared = KEYS[1], KEYS[2]
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local held = redis.call('GET', lease)
if held and held ~= 's' then
  local n = #owner + 1
  if string.sub(held, 1, n) ~= owner .. '\\n' or string.find(held, '\\n', n + 1, true) then return 0 end
  redis.call('PEXPIRE', lease, ttl)
  return 1
end
local value = redis.call('HGET', shared, owner)
if not value then return 0 end
${CLOCK}
local now = now_ms()
local colon = string.find(value, ':', 1, true)
if tonumber(string.sub(value, 1, colon - 1)) <= now then
  redis.call('HDEL', shared, owner)
  return 0
end
redis.call('HSET', shared, owner, (now + ttl) .. ':' .. string.sub(value, colon + 1))
if redis.call('PTTL', shared) < ttl then redis.call('PEXPIRE', shared, ttl) end
if redis.call('PTTL', lease) < ttl then redis.call('SET', lease, 's', 'PX', ttl) end
return 1
`;

/**
 * RELEASE. KEYS: lease, waiting, and then either fence (a handover), or every other key: shared,
 * intents, and in fair mode queue, queue expiries (a waiter that gives up leaves the line). ARGV:
 * owner, and for a handover the next owner and its ttl ms. Returns 1 when the owner's live lease was
 * removed, 0 otherwise, or the next owner's fence (a string) when the exclusive holder's lease went
 * straight to the next owner. With the first two keys only (or a handover's three) it settles only
 * the exclusive holder's release, and returns -1 for anything else: send it again with every key.
 * When anything changed (a lease or an announced writer went away) and someone was refused
 * meanwhile, publishes the lock's lease key on the wake channel ("<prefix>wake", the prefix being
 * what precedes the key's hash tag) so waiters retry; with nobody waiting it publishes nothing.
 */
export const RELEASE = `
local lease, waiting = KEYS[1], KEYS[2]
local owner, next_owner = ARGV[1], ARGV[2]
local held = redis.call('GET', lease)
-- The common case, inline: the exclusive holder lets go (it has no intent left: the grant removed
-- it). One DEL also takes the flag: 2 keys deleted means someone is waiting.
local n = #owner + 1
if held and string.sub(held, 1, n) == owner .. '\\n' and not string.find(held, '\\n', n + 1, true) then
  if next_owner then
    -- A handover: the releasing client has a waiter of its own, refused on this lock, that will ask
    -- again at once. Granting it here, as its own acquire would (next fence, its ttl on the server's
    -- clock), saves that acquire a script run and its reply a wait. Nobody else could use the lock
    -- meanwhile, so nobody is woken; the flag stays for the next release. A waiter that gave up
    -- instead releases it (or it expires by its ttl).
    local fence_key = KEYS[3]
    local fence = redis.call('INCR', fence_key)
    if fence == 1 then${NEXT_FENCE}
      fence = next_fence(fence_key, 1)
    else
      fence = string.format('%d', fence)
    end
    redis.call('SET', lease, next_owner .. '\\n' .. fence, 'PX', ARGV[3])
    return fence
  end
  if redis.call('DEL', lease, waiting) == 2 then redis.call('PUBLISH', string.match(lease, '^[^{]*') .. 'wake', lease) end
  return 1
end
if next_owner or not KEYS[4] then return -1 end
local shared, intents, queue, queue_exp = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local released = 0
local withdrew = redis.call('HDEL', intents, owner)
if queue and redis.call('ZREM', queue, owner) == 1 then
  redis.call('HDEL', queue_exp, owner)
  withdrew = 1
end
if not held or held == 's' then
  local value = redis.call('HGET', shared, owner)
  if value then
    redis.call('HDEL', shared, owner)
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local colon = string.find(value, ':', 1, true)
    if tonumber(string.sub(value, 1, colon - 1)) > now then released = 1 end
    if redis.call('HLEN', shared) == 0 then redis.call('DEL', lease) end
  end
end
if (released == 1 or withdrew == 1) and redis.call('DEL', waiting) == 1 then
  redis.call('PUBLISH', string.match(lease, '^[^{]*') .. 'wake', lease)
end
return released
`;

/**
 * INSPECT. KEYS: lease, shared. Returns {mode, owner1, remaining ms 1, fence1, ...} for live
 * holders ("x" or "s"), or {} when free. Remaining time, not an instant: no clocks are compared.
 */
export const INSPECT = `${CLOCK}
local lease, shared = KEYS[1], KEYS[2]
local held = redis.call('GET', lease)
if held and held ~= 's' then
  local owner, fence = string.match(held, '^(.*)\\n(%d+)$')
  return {'x', owner, redis.call('PTTL', lease), fence}
end
local now = now_ms()
local count = scan(shared, '', now)
if count == 0 then return {} end
local out = {'s'}
local entries = redis.call('HGETALL', shared)
for i = 1, #entries, 2 do
  local v = entries[i + 1]
  local colon = string.find(v, ':', 1, true)
  out[#out + 1] = entries[i]
  out[#out + 1] = tonumber(string.sub(v, 1, colon - 1)) - now
  out[#out + 1] = string.sub(v, colon + 1)
end
return out
`;

/** CACHE_GET. KEYS: entry. The stampede guard's store: a JSON entry. */
export const CACHE_GET = `return redis.call('GET', KEYS[1])`;

/** CACHE_SET. KEYS: entry. ARGV: JSON, ttl ms. */
export const CACHE_SET = `return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])`;

/**
 * FENCE_SYNC (Redlock). KEYS: lease, fence. ARGV: owner, token. After a quorum grant, every node that
 * granted learns the token (the highest fence of the quorum): its counter is raised to at least the
 * token and its lease records it. Any later quorum overlaps this one, so its fence is higher still.
 */
export const FENCE_SYNC = `${IS_HOLDER}
local lease, fence_key = KEYS[1], KEYS[2]
local owner, token = ARGV[1], ARGV[2]
local held = redis.call('GET', lease)
if not held or held == 's' or not is_holder(held, owner) then return 0 end
redis.call('SET', lease, owner .. '\\n' .. token, 'KEEPTTL')
local current = redis.call('GET', fence_key)
if not current or tonumber(current) < tonumber(token) then
  redis.call('SET', fence_key, token, 'PX', 604800000)
end
return 1
`;
