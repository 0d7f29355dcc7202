// Lua shared by the Redis and Redlock scripts, pasted into each script that needs it.
//
// A lease is one string key, expired by Redis itself (PX). Its value is one of:
//   "<owner>\n<fence>"   the exclusive holder, and the fence it was granted
//   "s"                  readers hold it (their leases are in the shared hash): one GET tells an
//                        exclusive acquirer whether it needs to look further
//   "\n<fence>"          (Redlock) released: the lock is free, and the quorum's fence is kept for
//                        as long as the lease would have lived, so the next fence is higher
// An exclusive or readers' value ending in "w" means someone was refused meanwhile: its release
// publishes a wake-up. The mark lives and dies with the lease, so it costs no key of its own.
//
// Fences live in the lease value, so nothing of a lock outlives it: a grant takes
// max(last + 1, the server clock in microseconds), "last" being the fence in the value it replaces
// (a handover, a released Redlock fence). With no value to go on, the clock alone keeps fences rising
// across release, expiry and a restart that lost everything, as long as the server's clock does not
// step back: each grant is a script run of its own, longer than a microsecond. A fence is a Lua
// number, exact below 2^53 (the clock is about 2^50.7 today); a stored fence at or above it is refused.
//
// An owner is any non-empty string, newlines included, so "<owner>\n<fence>" is split at its LAST
// newline (a fence is digits, maybe followed by the mark): comparing only a prefix would let owner
// "a" match holder "a\nb". Owner matching is written here once.

/**
 * The owner matching, as a Lua expression over two variables (inlined where a script runs on every
 * grant or release: a Lua closure is made on every run of a script that defines it).
 */
export const isHolder = (held: string, owner: string): string =>
  `(string.sub(${held}, 1, #${owner} + 1) == ${owner} .. '\\n' and not string.find(${held}, '\\n', #${owner} + 2, true))`;

/**
 * The lease as it was granted (a Lua expression over two variables): `granted` is the value the
 * client was granted, "" when it does not know it. Equal values name the same owner, since a fence
 * holds no newline; a value marked since ("w") falls to isHolder.
 */
export const isGranted = (held: string, granted: string): string => `(${held} == ${granted} and ${granted} ~= '')`;

/** A lease's value as the scripts write it for `owner` and `fence`: what isGranted compares with. */
export const leaseValue = (owner: string, fence: bigint | string): string => `${owner}\n${fence}`;

/**
 * The server clock in µs as digits, from a TIME reply held in `t` (an expression): seconds, then the
 * µs padded to six digits. No number is formatted, which a script on the common path would pay for.
 */
export const clockDigits = (t: string): string => `${t}[1] .. string.rep('0', 6 - #${t}[2]) .. ${t}[2]`;

/** Refuses a stored fence `n` (a Lua number) at or above 2^53, where a Lua number repeats it (a statement). */
export const refuseHuge = (n: string): string =>
  `if ${n} >= 9007199254740991 then error({err = 'ERR locksmith: a stored fence is at or above 2^53; refusing to repeat it'}) end`;

/** The wake-up of a lease's waiters (a statement): its release publishes the lease key on the prefix's channel. */
export const wakeOf = (lease: string): string => `redis.call('PUBLISH', string.match(${lease}, '^[^{]*') .. 'wake', ${lease})`;

/** is_holder(held, owner), fence_of(held), is_marked(held), wake(lease), for the scripts off the common path. */
export const HOLDER = `
local function is_holder(held, owner)
  return ${isHolder('held', 'owner')}
end
-- The fence (digits) of an exclusive or released value; nil for the readers' marker or a foreign value.
local function fence_of(held)
  return string.match(held, '\\n(%d+)w?$')
end
-- Someone was refused while this value was the lease.
local function is_marked(held)
  return string.byte(held, -1) == 119
end
local function wake(lease)
  ${wakeOf('lease')}
end
`;

/**
 * The start of a script only the lease's holder may run: KEYS[1] the lease, ARGV[1] the owner; anyone
 * else gets 0. Leaves \`lease\` and \`held\` (its value) for the rest. Needs HOLDER.
 */
export const HOLDER_ONLY = `
local lease = KEYS[1]
local held = redis.call('GET', lease)
if not held or not is_holder(held, ARGV[1]) then return 0 end
`;

/**
 * settle(lease, owner, ttl), for a plain exclusive request: what the lease's value decides alone.
 * Returns the reply when it settles the request (the holder's own fence with a fresh ttl; -1 -
 * retry-after ms when another holds it, after marking it so its release wakes us; 0 when readers hold
 * it), else nil and the last fence to go on from (nil when there is none). Needs HOLDER.
 */
export const SETTLE = `
local function settle(lease, owner, ttl)
  local held = redis.call('GET', lease)
  if not held then return nil, nil end
  if string.byte(held) == 10 then return nil, string.sub(held, 2) end
  if is_holder(held, owner) then
    redis.call('PEXPIRE', lease, ttl)
    return tonumber(fence_of(held))
  end
  if held == 's' or held == 'sw' then return 0 end
  if fence_of(held) and not is_marked(held) then redis.call('SET', lease, held .. 'w', 'KEEPTTL') end
  -- PTTL is 0 in the lease's last ms: still "retry in 1 ms", never -1, which means "unknown".
  return -1 - math.max(redis.call('PTTL', lease), 1)
end
`;

/**
 * next_fence(last, t): max(last + 1, server µs), `last` being digits or nil, `t` a TIME reply the
 * script already has (nil: asked here). Needs nothing else.
 */
export const FENCE = `
local function next_fence(last, t)
  t = t or redis.call('TIME')
  local f = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if last then
    local n = tonumber(last)
    ${refuseHuge('n')}
    if n >= f then f = n + 1 end
  end
  return f
end
-- Lua would print a 16-digit number in exponent form.
local function digits(n)
  return string.format('%d', n)
end
`;

/** now_ms(), and scan(hash, field, now) over a hash of "<expires ms>[:<fence>]". Slow paths only. */
export const CLOCK = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Live entries: count, soonest expiry, and field's value after the colon; expired entries are dropped.
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
