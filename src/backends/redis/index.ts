// Locks on one Redis server or a Redis Cluster. Every verb is one Lua script, run by EVALSHA: an
// uncontended acquire and a release are one round trip each, and a plain exclusive lock (the common
// case) has one key, its lease, which expires with it (see lua.ts). Releases publish the lock's lease
// key on one channel; the backend keeps one subscriber connection for all its waiters.

import { performance } from 'node:perf_hooks';
import type { AcquireRequest, AcquireResult, LockBackend, LockInfo } from '../../backend.js';
import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption, prefixOption } from '../shared/checks.js';
import { adapt, type RedisAdapter } from './client.js';
import { keysFor, leaseKey, rateKey, wakeChannel, type LockKeys } from './keys.js';
import { leaseValue } from './lua.js';
import { redisRate } from './rate.js';
import { redisPools } from './pools.js';
import { ACQUIRE_ANY, EXTEND_SHARED, RELEASE_ANY } from './rw-scripts.js';
import { callScript } from './call.js';
import type { Grant, Script } from './script.js';
import { ACQUIRE, CACHE_GET, CACHE_SET, EXTEND, HANDOVER, INSPECT, RELEASE, type Holder } from './scripts.js';
import { WakeChannel } from './wake.js';
import type { CacheEntry, CacheStore } from '../../recipes/stampede.js';
import type { RateStore } from '../shared/gcra.js';
import type { PoolStore } from '../shared/pools.js';
import { plainBackend } from '../shared/plain.js';

export { keysFor, type LockKeys } from './keys.js';

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

/** A lease of `owner` on `lease`, as one string: owners are data, so never an object property. */
const leaseOf = (lease: string, owner: string): string => `${lease}\n${owner}`;

/**
 * Information for an `inspect`, from the server's reply. Shared with the Redlock backend, not part of
 * the public API.
 * @internal
 */
export function lockInfo(key: string, reply: { mode: LockInfo['mode']; holders: Holder[] } | null): LockInfo | null {
  if (!reply) return null;
  // The server reports time left, which becomes an instant on our clock: no clocks compared.
  const wall = Date.now();
  return { key, mode: reply.mode, holders: reply.holders.map((h) => ({ owner: h.owner, fence: h.fence, expiresAt: wall + h.remaining })) };
}

export function redisBackend(options: RedisBackendOptions): LockBackend {
  return plainBackend(new RedisBackend(options));
}

class RedisBackend implements LockBackend {
  readonly name = 'redis';
  readonly capabilities = { shared: true, wake: true, fencing: true, expiry: 'ttl' } as const;
  readonly rate: RateStore;
  readonly pools: PoolStore;
  readonly #queueMs: number;
  readonly #timeout: number;
  readonly #prefix: string;
  readonly #redis: RedisAdapter;
  readonly #wakes: WakeChannel;
  /**
   * By lease key, the plain exclusive waiter that will try again when woken: the last one refused
   * while a wait on the key was armed here. The core lets only the head of a key's local queue wait
   * on the backend, and it arms its wait before each try; an owner refused with no wait armed may be
   * queued behind it, and a lease handed to it would sit idle. A release here hands it the lease.
   */
  readonly #waiters = new Map<string, { owner: string; ttl: number }>();
  /**
   * Handovers whose waiter has not asked again yet, by lease key. `fence` settles with the release's
   * reply: the waiter's fence, or null when it got nothing (the release found no lease of its own, or failed).
   */
  readonly #handovers = new Map<string, { owner: string; ttl: number; sent: number; fence: Promise<bigint | null> }>();
  /**
   * Leases whose release needs more than the exclusive holder's script: shared leases granted here,
   * and waiters refused here that left something on the server (an intent, a place in line). Entries
   * go with the release (or, for a waiter, with its grant), so the set is bounded by live requests.
   */
  readonly #longRelease = new Set<string>();
  /** One script call (bound: the rate and pool stores take it). */
  readonly #call = <R>(s: Script<R>, key: string, keys: string[], args: (string | number)[], ms = this.#timeout): Promise<R> =>
    callScript(this.#redis, s, key, keys, args, ms);

  constructor(options: RedisBackendOptions) {
    const o = checkOptionNames(options, ['client', 'prefix', 'fair', 'queueTimeout', 'commandTimeout'], 'redisBackend()');
    if (o.fair !== undefined && typeof o.fair !== 'boolean') throw new LockArgumentError('redisBackend(): fair must be a boolean');
    const queueTimeout = msOption('redisBackend()', 'queueTimeout', o.queueTimeout, 3_000, 10);
    this.#queueMs = o.fair === true ? queueTimeout : 0;
    this.#timeout = msOption('redisBackend()', 'commandTimeout', o.commandTimeout, 5_000, 1);
    this.#prefix = prefixOption('redisBackend()', o.prefix, 'locksmith:');
    this.#redis = adapt(o.client);
    this.#wakes = new WakeChannel([this.#redis], wakeChannel(this.#prefix));
    const prefix = this.#prefix;
    this.rate = redisRate(this.#call, (name) => rateKey(prefix, name));
    this.pools = redisPools(this.#call, prefix);
  }

  #every(k: LockKeys): string[] {
    return this.#queueMs ? [k.lease, k.waiting, k.shared, k.intents, k.queue, k.queueExp] : [k.lease, k.waiting, k.shared, k.intents];
  }

  #acquireAny(req: AcquireRequest, ms: number): Promise<Exclude<Grant, { granted: 'long' }>> {
    const args = [
      req.owner,
      req.ttl,
      req.mode === 'exclusive' ? 'x' : 's',
      req.limit ?? 0,
      req.writerPreference ? '1' : '0',
      req.intent ?? 0,
      req.queue ? this.#queueMs : -this.#queueMs,
    ];
    return this.#call(ACQUIRE_ANY, req.key, this.#every(keysFor(this.#prefix, req.key)), args, ms);
  }

  /** A handover made to `owner` by this instance's release, when it is still good. */
  async #handedTo(lease: string, owner: string): Promise<AcquireResult | undefined> {
    const handed = this.#handovers.get(lease);
    if (handed?.owner !== owner) return undefined;
    this.#handovers.delete(lease);
    // An attempt refused just before the handover may have recorded the waiter again.
    if (this.#waiters.get(lease)?.owner === owner) this.#waiters.delete(lease);
    const fence = await handed.fence;
    // The server started the lease's ttl after the release was sent, so counting from then errs
    // early. A grant kept waiting for long is renewed by a plain acquire instead (same owner: same
    // fence, fresh ttl), as is any handover that did not happen.
    const validity = handed.ttl - (performance.now() - handed.sent);
    return fence !== null && validity > handed.ttl / 2 ? { granted: true, fence, validity } : undefined;
  }

  /** Gives the lease of `owner` straight to `next`, this instance's waiter (see HANDOVER). */
  #handOver(lease: string, key: string, owner: string, next: { owner: string; ttl: number }): Promise<boolean> {
    const sent = performance.now();
    const reply = this.#call(HANDOVER, key, [lease], [owner, next.owner, next.ttl]);
    this.#handovers.set(lease, { owner: next.owner, ttl: next.ttl, sent, fence: reply.catch(() => null) });
    // The core nudges its own waiters; one of another Locksmith sharing this backend hears it here.
    this.#wakes.wake(lease);
    return reply.then((fence) => fence !== null);
  }

  acquire(req: AcquireRequest): Promise<AcquireResult> {
    const lease = leaseKey(this.#prefix, req.key);
    return this.#handovers.size > 0 ? this.#handedOrAsk(req, lease) : this.#ask(req, lease);
  }

  async #handedOrAsk(req: AcquireRequest, lease: string): Promise<AcquireResult> {
    return (await this.#handedTo(lease, req.owner)) ?? this.#ask(req, lease);
  }

  /**
   * One acquire sent to the server. Not async, as every lock pays for it: the bookkeeping on the reply
   * (#settled) runs in the call's own step (callScript).
   */
  #ask(req: AcquireRequest, lease: string): Promise<AcquireResult> {
    const plain = req.mode === 'exclusive' && !req.intent && !this.#queueMs;
    this.#redis.batch(); // see release
    const armed = this.#wakes.has(lease);
    const ms = Math.min(this.#timeout, req.ttl);
    if (!plain) return this.#acquireAny(req, ms).then((reply) => this.#settled(req, lease, armed, false, reply));
    // The plain exclusive case sends only its lease key, owner and ttl: every key and argument costs
    // time on both sides. One that meets readers is sent again with every key.
    return callScript(this.#redis, ACQUIRE, req.key, [lease], [req.owner, req.ttl], ms, (reply) =>
      reply.granted === 'long'
        ? this.#acquireAny(req, ms).then((again) => this.#settled(req, lease, armed, true, again))
        : this.#settled(req, lease, armed, true, reply),
    );
  }

  /** The bookkeeping on an acquire's reply, which it returns as the result. */
  #settled(req: AcquireRequest, lease: string, armed: boolean, plain: boolean, reply: Exclude<Grant, { granted: 'long' }>): AcquireResult {
    if (reply.granted === true) {
      if (this.#waiters.size > 0 && this.#waiters.get(lease)?.owner === req.owner) this.#waiters.delete(lease);
      if (req.mode === 'shared') this.#longRelease.add(leaseOf(lease, req.owner));
      else if (this.#longRelease.size > 0) this.#longRelease.delete(leaseOf(lease, req.owner));
      return reply;
    }
    if (!plain && req.mode === 'exclusive' && (req.intent || (this.#queueMs && req.queue)))
      this.#longRelease.add(leaseOf(lease, req.owner));
    if (armed && req.queue && plain) this.#waiters.set(lease, { owner: req.owner, ttl: req.ttl });
    return reply;
  }

  extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const lease = leaseKey(this.#prefix, key);
    const ms = Math.min(this.#timeout, ttl);
    if (this.#longRelease.size > 0 && this.#longRelease.has(leaseOf(lease, owner)))
      return this.#call(EXTEND_SHARED, key, [lease, keysFor(this.#prefix, key).shared], [owner, ttl], ms);
    return this.#call(EXTEND, key, [lease], [owner, ttl], ms);
  }

  release(key: string, owner: string, fence?: bigint): Promise<boolean> {
    const lease = leaseKey(this.#prefix, key);
    // Commands sent in the same tick leave together, in writes of a few (client.ts): fewer system
    // calls when many locks are busy (their replies come back together and are answered together).
    // A command made with nothing in flight leaves at once (a lone release, or the first of a tick's);
    // a waiter here, nudged by the core as this release leaves, follows it in the tick's next write.
    this.#redis.batch();
    const next = this.#waiters.size > 0 ? this.#waiters.get(lease) : undefined;
    if (next) this.#waiters.delete(lease);
    // A waiter giving up: what it was handed (if anything) goes with this release, sent after the handover.
    if (this.#handovers.size > 0 && this.#handovers.get(lease)?.owner === owner) this.#handovers.delete(lease);
    if (this.#longRelease.size > 0 && this.#longRelease.delete(leaseOf(lease, owner)))
      return this.#call(RELEASE_ANY, key, this.#every(keysFor(this.#prefix, key)), [owner]);
    if (next && next.owner !== owner) return this.#handOver(lease, key, owner, next);
    return this.#call(RELEASE, key, [lease], [owner, fence === undefined ? '' : leaseValue(owner, fence)]);
  }

  async inspect(key: string): Promise<LockInfo | null> {
    const k = keysFor(this.#prefix, key);
    return lockInfo(key, await this.#call(INSPECT, key, [k.lease, k.shared], []));
  }

  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return this.#wakes.wait(leaseKey(this.#prefix, key), signal);
  }

  async close(): Promise<void> {
    this.#waiters.clear();
    this.#handovers.clear();
    this.#longRelease.clear();
    await this.#wakes.close();
  }
}

export interface RedisCacheStoreOptions {
  client: unknown;
  /** Prepended to cache keys (default "locksmith:cache:"). */
  prefix?: string;
}

/** How long a cache read or write waits for Redis: past it, the guard treats the call as failed. */
const CACHE_TIMEOUT_MS = 5_000;

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
      const raw = await callScript(redis, CACHE_GET, key, [prefix + key], [], CACHE_TIMEOUT_MS);
      return typeof raw === 'string' ? (JSON.parse(raw) as CacheEntry) : undefined;
    },
    async set(key, entry, ttl) {
      await callScript(redis, CACHE_SET, key, [prefix + key], [JSON.stringify(entry), ttl], CACHE_TIMEOUT_MS);
    },
  };
}
