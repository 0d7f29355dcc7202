// Locks on one Redis server or a Redis Cluster. Every verb is one Lua script (scripts.ts), run by
// EVALSHA: an uncontended acquire and a release are one round trip each. Releases publish the lock's
// name on one channel; the backend keeps one subscriber connection for all its waiters.

import type { AcquireRequest, AcquireResult, LeaseHolder, LockBackend, LockInfo } from '../../backend.js';
import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { withTimeout } from '../../core/time.js';
import { msOption, prefixOption } from '../shared/checks.js';
import { Wakers } from '../shared/wakers.js';
import { adapt, script, type RedisAdapter, type Script, type Subscription } from './client.js';
import { ACQUIRE, CACHE_GET, CACHE_SET, EXTEND, INSPECT, RELEASE } from './scripts.js';
import type { CacheEntry, CacheStore } from '../../recipes/stampede.js';

export interface RedisBackendOptions {
  /** An ioredis `Redis` or `Cluster`, or a connected node-redis client or cluster. Never closed by us. */
  client: unknown;
  /** Prepended to every key and the wake channel (default "locksmith:"). */
  prefix?: string;
  /**
   * Serve exclusive waiters first come, first served, across processes. A waiter keeps its place by
   * retrying (at least every `backoff.max`); one silent for `queueTimeout` ms (default 3000) loses it.
   */
  fair?: boolean;
  queueTimeout?: number;
  /**
   * How long to wait for the server's answer to one call (default 5000 ms; an acquire or extend waits
   * at most its ttl, as a later grant would already have run out). Past it the call fails with an
   * error instead of hanging on a connection that silently stopped answering; a late answer is
   * ignored, and a lease it granted expires on its own or is released by the core's withdrawal.
   */
  commandTimeout?: number;
}

const SCRIPTS = {
  acquire: script(ACQUIRE),
  extend: script(EXTEND),
  release: script(RELEASE),
  inspect: script(INSPECT),
  cacheGet: script(CACHE_GET),
  cacheSet: script(CACHE_SET),
};
const sharedId = (lease: string, owner: string): string => `${lease}\n${owner}`;

/**
 * The keys of one lock. The escaped name is the {hash tag}, so all of them land in one Cluster slot
 * (no CROSSSLOT); escaping braces keeps a name like "}x" from ending the tag early (an empty tag would
 * hash each whole key to a different slot).
 */
export function keysFor(
  prefix: string,
  name: string,
): { lease: string; shared: string; intents: string; fence: string; waiting: string; queue: string; queueExp: string } {
  const tag = `${prefix}{${/[%{}]/.test(name) ? name.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) : name}}`;
  return {
    lease: `${tag}:lease`,
    shared: `${tag}:shared`,
    intents: `${tag}:intents`,
    fence: `${tag}:fence`,
    waiting: `${tag}:waiting`,
    queue: `${tag}:queue`,
    queueExp: `${tag}:queue-exp`,
  };
}

export function redisBackend(options: RedisBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['client', 'prefix', 'fair', 'queueTimeout', 'commandTimeout'], 'redisBackend()');
  if (o.fair !== undefined && typeof o.fair !== 'boolean') throw new LockArgumentError('redisBackend(): fair must be a boolean');
  const queueTimeout = msOption('redisBackend()', 'queueTimeout', o.queueTimeout, 3_000, 10);
  const queueMs = o.fair === true ? queueTimeout : 0;
  const timeout = msOption('redisBackend()', 'commandTimeout', o.commandTimeout, 5_000, 1);
  const prefix = prefixOption('redisBackend()', o.prefix, 'locksmith:');
  const redis: RedisAdapter = adapt(o.client);
  /** One script call, failed after `ms` without an answer (see commandTimeout). */
  function call(s: Script, keys: string[], args: (string | number)[], ms = timeout): Promise<unknown> {
    return withTimeout(redis.run(s, keys, args), ms, () => new Error(`Redis did not answer within ${ms} ms`));
  }
  const channel = `${prefix}wake`;
  /** Waiters by lease key, which is what a release publishes: a key, not a name, is cheaper to pass. */
  const listeners = new Wakers();
  let subscription: Subscription | undefined;
  let ready = false;
  let closed = false;
  /**
   * By lease key, the plain exclusive waiter that will try again when woken: the last one refused
   * while a wait on the key was armed here. The core lets only the head of a key's local queue wait
   * on the backend, and it arms its wait before each try; an owner refused with no wait armed may be
   * queued behind it, and a lease handed to it would sit idle. A release here hands it the lease.
   */
  const waiters = new Map<string, { owner: string; ttl: number }>();
  /**
   * Handovers whose waiter has not asked again yet, by lease key. `fence` settles with the release's
   * reply: the waiter's fence, or null when it got nothing (the release found no lease of its own, or failed).
   */
  const handovers = new Map<string, { owner: string; ttl: number; sent: number; fence: Promise<string | null> }>();
  /** Shared leases granted here and not yet released: their release goes straight to the long form. */
  const sharedLeases = new Set<string>();

  /** Anything but the exclusive holder's release takes every key (the script says so when it meets one). */
  function releaseLong(k: ReturnType<typeof keysFor>, owner: string): Promise<boolean> {
    const keys = queueMs ? [k.lease, k.waiting, k.shared, k.intents, k.queue, k.queueExp] : [k.lease, k.waiting, k.shared, k.intents];
    return call(SCRIPTS.release, keys, [owner]).then((r) => r === 1);
  }

  const notify = (lease: string): void => listeners.wake(lease);

  /** The shared subscriber, made on first wait. A failed attempt is forgotten so a later wait retries. */
  function subscribed(): Promise<void> {
    if (!subscription) {
      const sub = redis.subscribe(channel, notify);
      subscription = sub;
      sub.ready.then(
        () => void (ready = subscription === sub),
        () => {
          if (subscription === sub) subscription = undefined;
        },
      );
    }
    return subscription.ready;
  }

  return {
    name: 'redis',
    capabilities: { shared: true, wake: true, fencing: true, expiry: 'ttl' },

    async acquire(req: AcquireRequest): Promise<AcquireResult> {
      const k = keysFor(prefix, req.key);
      const handed = handovers.get(k.lease);
      if (handed?.owner === req.owner) {
        handovers.delete(k.lease);
        // An attempt refused just before the handover may have recorded the waiter again.
        if (waiters.get(k.lease)?.owner === req.owner) waiters.delete(k.lease);
        const fence = await handed.fence;
        // The server started the lease's ttl after the release was sent, so counting from then errs
        // early. A grant kept waiting for long is renewed by the script below instead (same owner:
        // same fence, fresh ttl), as is any handover that did not happen.
        const validity = handed.ttl - (performance.now() - handed.sent);
        if (fence !== null && validity > handed.ttl / 2) return { granted: true, fence: BigInt(fence), validity };
      }
      // The plain exclusive case sends only what it needs: every key and argument costs time on both sides.
      const plain = req.mode === 'exclusive' && !req.intent && !queueMs;
      const all = queueMs ? [k.lease, k.fence, k.waiting, k.shared, k.intents, k.queue, k.queueExp] : [k.lease, k.fence, k.waiting, k.shared, k.intents];
      const args = plain
        ? [req.owner, req.ttl]
        : [req.owner, req.ttl, req.mode === 'exclusive' ? 'x' : 's', req.limit ?? 0, req.writerPreference ? '1' : '0', req.intent ?? 0, req.queue ? queueMs : -queueMs];
      redis.batch(); // see release
      const armed = listeners.has(k.lease);
      const ms = Math.min(timeout, req.ttl);
      let reply = await call(SCRIPTS.acquire, plain ? [k.lease, k.fence, k.waiting] : all, args, ms);
      // A plain request that met readers: they are looked at with every key.
      if (reply === 'keys') reply = await call(SCRIPTS.acquire, all, args, ms);
      const n = Number(reply);
      if (n > 0) {
        if (waiters.get(k.lease)?.owner === req.owner) waiters.delete(k.lease);
        if (req.mode === 'shared') sharedLeases.add(sharedId(k.lease, req.owner));
        return { granted: true, fence: BigInt(n) };
      }
      if (armed && req.queue && plain) waiters.set(k.lease, { owner: req.owner, ttl: req.ttl });
      return { granted: false, retryAfter: n < 0 ? -n - 1 : undefined };
    },

    async extend(key, owner, ttl) {
      const k = keysFor(prefix, key);
      return (await call(SCRIPTS.extend, [k.lease, k.shared], [owner, ttl], Math.min(timeout, ttl))) === 1;
    },

    async release(key, owner) {
      const k = keysFor(prefix, key);
      // Commands sent in the same tick leave in one write: fewer system calls when many locks are busy
      // (their replies come back together and are answered together), and a waiter here, nudged by
      // the core as this release leaves, sends its attempt along. Measured (bench/redis.ts, case B)
      // against corking only when calls are in flight, which was slower.
      redis.batch();
      const next = waiters.get(k.lease);
      if (next) waiters.delete(k.lease);
      // A waiter giving up: what it was handed (if anything) goes with this release, sent after the handover.
      if (handovers.get(k.lease)?.owner === owner) handovers.delete(k.lease);
      if (sharedLeases.size > 0 && sharedLeases.delete(sharedId(k.lease, owner))) return releaseLong(k, owner);
      if (next && next.owner !== owner) {
        const sent = performance.now();
        const reply = call(SCRIPTS.release, [k.lease, k.waiting, k.fence], [owner, next.owner, next.ttl]);
        const fence = reply.then(
          (r) => (typeof r === 'string' ? r : null),
          () => null,
        );
        handovers.set(k.lease, { owner: next.owner, ttl: next.ttl, sent, fence });
        // The core nudges its own waiters; one of another Locksmith sharing this backend hears it here.
        notify(k.lease);
        const r = await reply;
        return r === -1 ? releaseLong(k, owner) : r !== 0;
      }
      const r = await call(SCRIPTS.release, [k.lease, k.waiting], [owner]);
      return r === -1 ? releaseLong(k, owner) : r === 1;
    },

    async inspect(key): Promise<LockInfo | null> {
      const k = keysFor(prefix, key);
      const reply = (await call(SCRIPTS.inspect, [k.lease, k.shared], [])) as (string | number)[];
      if (reply.length === 0) return null;
      // The server reports time left, which becomes an instant on our clock: no clocks compared.
      const wall = Date.now();
      const holders: LeaseHolder[] = [];
      for (let i = 1; i + 2 < reply.length; i += 3) {
        holders.push({ owner: String(reply[i]), expiresAt: wall + Number(reply[i + 1]), fence: BigInt(String(reply[i + 2])) });
      }
      return { key, mode: reply[0] === 'x' ? 'exclusive' : 'shared', holders };
    },

    waitForChange(key, signal) {
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted || closed) return resolve();
        const withdraw = listeners.add(keysFor(prefix, key).lease, () => wake());
        const forget = (): void => {
          signal.removeEventListener('abort', wake);
          withdraw();
        };
        const wake = (): void => {
          forget();
          resolve();
        };
        signal.addEventListener('abort', wake, { once: true });
        // Until the subscriber is confirmed a release could go unheard: when it is, wake once
        // (spuriously) so the waiter tries again with the subscription in place.
        const wasReady = ready;
        subscribed().then(
          () => {
            if (!wasReady) wake();
          },
          // Rejecting tells the core to fall back to polling (resolving would have it retry at once).
          (error: unknown) => {
            forget();
            reject(error instanceof Error ? error : new Error(String(error)));
          },
        );
      });
    },

    async close() {
      closed = true;
      waiters.clear();
      handovers.clear();
      sharedLeases.clear();
      listeners.wakeAll();
      const sub = subscription;
      subscription = undefined;
      ready = false;
      await sub?.close();
    },
  };
}

export interface RedisCacheStoreOptions {
  client: unknown;
  /** Prepended to cache keys (default "locksmith:cache:"). */
  prefix?: string;
}

/**
 * A store for the stampede guard that every process sharing the Redis sees, so one fetch serves all
 * of them. Values are kept as JSON (so they must be JSON-serializable), with the guard's ttl.
 */
export function redisCacheStore(options: RedisCacheStoreOptions): CacheStore {
  const o = checkOptionNames(options, ['client', 'prefix'], 'redisCacheStore()');
  const prefix = prefixOption('redisCacheStore()', o.prefix, 'locksmith:cache:');
  const redis = adapt(o.client);
  return {
    async get(key) {
      const raw = await redis.run(SCRIPTS.cacheGet, [prefix + key], []);
      return typeof raw === 'string' ? (JSON.parse(raw) as CacheEntry) : undefined;
    },
    async set(key, entry, ttl) {
      await redis.run(SCRIPTS.cacheSet, [prefix + key], [JSON.stringify(entry), ttl]);
    },
  };
}
