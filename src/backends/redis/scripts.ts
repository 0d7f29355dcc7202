// The Redis backend's verbs, one Lua script each, so every check-and-set is atomic on the server.
// Each lock name has three keys sharing one {hash tag}, so they live in one Cluster slot:
//   lease   hash: "m" → mode ("x" exclusive, "s" shared); "o:<owner>" → "<expires ms>:<fence>"
//   intents hash: "<owner>" → "<expires ms>", writers waiting under writer preference
//   fence   string: the counter; missing means "seed from the server clock", so it never goes back
// Time is always the server's (TIME), never the client's. Scripts name KEYS/ARGV as locals first.
// Redlock runs the same scripts on each of its nodes.

/** Shared prologue: server time in ms, and a scan of the lease that drops expired holders. */
const LIVE_HOLDERS = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Returns mode, live holder count, soonest expiry, and this owner's fence if it holds a lease.
local function live_holders(lease, field, now)
  local mode, count, soonest, mine = nil, 0, nil, nil
  local entries = redis.call('HGETALL', lease)
  for i = 1, #entries, 2 do
    local f, v = entries[i], entries[i + 1]
    if f == 'm' then
      mode = v
    else
      local sep = string.find(v, ':', 1, true)
      local expires = tonumber(string.sub(v, 1, sep - 1))
      if expires <= now then
        redis.call('HDEL', lease, f)
      else
        count = count + 1
        if soonest == nil or expires < soonest then soonest = expires end
        if f == field then mine = string.sub(v, sep + 1) end
      end
    end
  end
  return mode, count, soonest, mine
end
`;

/**
 * ACQUIRE. KEYS: lease, intents, fence. ARGV: owner, ttl ms, mode ("x"|"s"), limit (0: none),
 * writer preference ("1"|"0"), intent ms (0: none).
 * Returns {1, fence} when granted, {0, retry-after ms} (-1: unknown) when not.
 */
export const ACQUIRE = `${LIVE_HOLDERS}
local lease, intents, fence_key = KEYS[1], KEYS[2], KEYS[3]
local owner, ttl, want = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local limit, writer_pref, intent_ms = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local now = now_ms()
local field = 'o:' .. owner
local mode, count, soonest, mine = live_holders(lease, field, now)

-- The same owner asking again re-grants its lease (same fence, fresh ttl); other modes must wait.
if mine then
  if mode ~= want then return {0, -1} end
  redis.call('HSET', lease, field, (now + ttl) .. ':' .. mine)
  if redis.call('PTTL', lease) < ttl then redis.call('PEXPIRE', lease, ttl) end
  return {1, mine}
end

-- Writers announced by others (only writer-preferring readers look at them).
local waiting_writers, intent_soonest = 0, nil
if writer_pref and want == 's' then
  local entries = redis.call('HGETALL', intents)
  for i = 1, #entries, 2 do
    local expires = tonumber(entries[i + 1])
    if expires <= now then
      redis.call('HDEL', intents, entries[i])
    else
      waiting_writers = waiting_writers + 1
      if intent_soonest == nil or expires < intent_soonest then intent_soonest = expires end
    end
  end
end

local granted
if want == 'x' then
  granted = count == 0
else
  granted = waiting_writers == 0 and (count == 0 or (mode == 's' and (limit == 0 or count < limit)))
end

if not granted then
  if want == 'x' and intent_ms > 0 then
    redis.call('HSET', intents, owner, now + intent_ms)
    redis.call('PEXPIRE', intents, intent_ms * 2)
  end
  local retry = soonest
  if intent_soonest and (retry == nil or intent_soonest < retry) then retry = intent_soonest end
  if retry == nil then return {0, -1} end
  return {0, retry - now}
end

-- A missing counter (first use, or a server that lost its data) starts from the server clock in
-- microseconds, so fences keep increasing across such a loss as long as the clock does not step back.
if redis.call('EXISTS', fence_key) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', fence_key, t[1] .. string.format('%06d', tonumber(t[2])))
end
local fence = redis.call('INCR', fence_key)
redis.call('PEXPIRE', fence_key, 604800000) -- a week idle: the clock seed takes over again
if count == 0 then redis.call('HSET', lease, 'm', want) end
-- %d, not tostring: Lua prints a 16-digit number in exponent form.
redis.call('HSET', lease, field, (now + ttl) .. ':' .. string.format('%d', fence))
if redis.call('PTTL', lease) < ttl then redis.call('PEXPIRE', lease, ttl) end
if intent_ms > 0 then redis.call('HDEL', intents, owner) end
return {1, fence}
`;

/** EXTEND. KEYS: lease. ARGV: owner, ttl ms. Returns 1 when renewed, 0 when the owner holds no live lease. */
export const EXTEND = `${LIVE_HOLDERS}
local lease = KEYS[1]
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local field = 'o:' .. owner
local value = redis.call('HGET', lease, field)
if not value then return 0 end
local sep = string.find(value, ':', 1, true)
if tonumber(string.sub(value, 1, sep - 1)) <= now then
  redis.call('HDEL', lease, field)
  return 0
end
redis.call('HSET', lease, field, (now + ttl) .. ':' .. string.sub(value, sep + 1))
if redis.call('PTTL', lease) < ttl then redis.call('PEXPIRE', lease, ttl) end
return 1
`;

/**
 * RELEASE. KEYS: lease, intents. ARGV: owner, wake channel, lock name.
 * Returns 1 when the owner's live lease was removed, 0 otherwise. Publishes the name on the wake
 * channel when anything changed (a lease or an announced writer went away), so waiters retry.
 */
export const RELEASE = `${LIVE_HOLDERS}
local lease, intents = KEYS[1], KEYS[2]
local owner, channel, name = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local field = 'o:' .. owner
local withdrew = redis.call('HDEL', intents, owner)
local mode, count, soonest, mine = live_holders(lease, field, now)
local released = 0
if mine then
  redis.call('HDEL', lease, field)
  released = 1
  count = count - 1
end
if count == 0 then redis.call('DEL', lease) end
if released == 1 or withdrew == 1 then redis.call('PUBLISH', channel, name) end
return released
`;

/** INSPECT. KEYS: lease. Returns {mode, now, owner1, value1, ...} for live holders, or {} when free. */
export const INSPECT = `${LIVE_HOLDERS}
local lease = KEYS[1]
local now = now_ms()
local mode, count = live_holders(lease, '', now)
if count == 0 then return {} end
local out = {mode, tostring(now)}
local entries = redis.call('HGETALL', lease)
for i = 1, #entries, 2 do
  if entries[i] ~= 'm' then
    out[#out + 1] = string.sub(entries[i], 3)
    out[#out + 1] = entries[i + 1]
  end
end
return out
`;
