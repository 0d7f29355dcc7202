// Pool membership on Redis: one set per pool, whose key carries the pool name's hash tag (so it lives
// in one Cluster slot). Each change is one script: atomic, and it publishes the pool's wake-up (its
// lease key on the wake channel, as a release does) when it can let a waiter in, so waiters in every
// process hear it on the subscriber connection they already share. Redis deletes a set with its
// last member, so a cleared pool leaves nothing.

import type { PoolStore } from '../shared/pools.js';
import { keysFor, leaseKey, wakeChannel } from './keys.js';
import { BadReply, defineScript, integer, type Script } from './script.js';

/**
 * Adds members unless the set would pass a size. KEYS[1] the set. ARGV[1] the most members, ARGV[2]
 * the wake channel, ARGV[3] the pool's lease key (the wake-up's message), ARGV[4..] the members.
 * Returns how many were new, or -1 (nothing added) when the set would have more than ARGV[1].
 */
export const POOL_ADD = `
local set, most = KEYS[1], tonumber(ARGV[1])
local fresh = {}
for i = 4, #ARGV do
  if redis.call('SISMEMBER', set, ARGV[i]) == 0 then fresh[#fresh + 1] = ARGV[i] end
end
if #fresh == 0 then return 0 end
if redis.call('SCARD', set) + #fresh > most then return -1 end
for i = 1, #fresh do redis.call('SADD', set, fresh[i]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return #fresh
`;

/** Removes members. KEYS[1] the set. ARGV the members. Returns how many were in it. */
export const POOL_REMOVE = `return redis.call('SREM', KEYS[1], unpack(ARGV))`;

/**
 * Replaces every member and wakes the pool. KEYS[1] the set. ARGV[1] the wake channel, ARGV[2] the
 * pool's lease key, ARGV[3..] the members (none: the set is deleted). Returns 1.
 */
export const POOL_ASSIGN = `
redis.call('DEL', KEYS[1])
for i = 3, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`;

/** The members. KEYS[1] the set. Returns them as a list. */
export const POOL_MEMBERS = `return redis.call('SMEMBERS', KEYS[1])`;

/** Wakes the pool's waiters (a member came back). ARGV[1] the wake channel, ARGV[2] the pool's lease key. */
export const POOL_NOTIFY = `return redis.call('PUBLISH', ARGV[1], ARGV[2])`;

function strings(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw new BadReply(reply);
  return reply.map((m: unknown) => {
    if (typeof m === 'string') return m;
    if (Buffer.isBuffer(m)) return m.toString('utf8');
    throw new BadReply(reply);
  });
}

const ADD = defineScript('pool add', POOL_ADD, (reply) => {
  const n = integer(reply);
  return n < 0 ? null : n;
});
const REMOVE = defineScript('pool remove', POOL_REMOVE, integer);
const ASSIGN = defineScript('pool assign', POOL_ASSIGN, () => undefined);
const MEMBERS = defineScript('pool members', POOL_MEMBERS, strings);
const NOTIFY = defineScript('pool notify', POOL_NOTIFY, () => undefined);

/** SREM takes at most this many members a call (Lua's unpack has a stack limit). */
const CHUNK = 1_000;

/** The backend's script call: `key` names the pool in errors. */
type Call = <R>(s: Script<R>, key: string, keys: string[], args: (string | number)[]) => Promise<R>;

/** The pool store of a Redis backend (`call` runs a script with the backend's timeout). */
export function redisPools(call: Call, prefix: string): PoolStore {
  const channel = wakeChannel(prefix);
  const set = (pool: string): string[] => [keysFor(prefix, pool).members];
  return {
    add: (pool, members, max) => call(ADD, pool, set(pool), [max, channel, leaseKey(prefix, pool), ...members]),
    async remove(pool, members) {
      let removed = 0;
      for (let i = 0; i < members.length; i += CHUNK) removed += await call(REMOVE, pool, set(pool), members.slice(i, i + CHUNK));
      return removed;
    },
    assign: (pool, members) => call(ASSIGN, pool, set(pool), [channel, leaseKey(prefix, pool), ...members]),
    members: (pool) => call(MEMBERS, pool, set(pool), []),
    notify: (pool) => call(NOTIFY, pool, set(pool), [channel, leaseKey(prefix, pool)]),
  };
}
