// The front object: checks the backend and the defaults, then only wires. Locks, read-write locks,
// semaphores and acquireAll are primitives over the engine (src/primitives/); pools, elections and
// the stampede guard are recipes over the public `Locks` interface (src/recipes/), which this class
// implements. Lease logic lives in the engine (src/core/), none here.

import type { LockBackend, LockInfo } from './backend.js';
import { Engine } from './core/engine.js';
import type { LockEvent, LocksmithEvents } from './core/events.js';
import type { Counters, Percentiles } from './core/stats.js';
import { LockArgumentError } from './errors.js';
import type { Lock } from './lock.js';
import {
  OPTION_NAMES,
  checkBackend,
  checkFunction,
  checkKey,
  checkLimit,
  checkOptionNames,
  checkOwner,
  checkSignal,
  checkWait,
  resolveDefaults,
  type AcquireOptions,
  type LocksmithOptions,
  type ResolvedDefaults,
  type RwOptions,
  type TryAcquireOptions,
} from './options.js';
import { acquireAll, type AcquireAllOptions, type LockGroup } from './primitives/multi.js';
import * as mutex from './primitives/mutex.js';
import * as rw from './primitives/rwlock.js';
import { Semaphore, type SemaphoreOptions } from './primitives/semaphore.js';
import { locked, type KeyFn } from './recipes/decorators.js';
import { Election, type ElectionOptions, type ElectionStats } from './recipes/election.js';
import type { Locks, StatsSource, WaitAttempt, WaitForOptions } from './recipes/locks.js';
import { Pool, type PoolOptions, type PoolStats } from './recipes/pool.js';
import { StampedeGuard, type StampedeOptions, type StampedeStats } from './recipes/stampede.js';
import { RateLimiter, type RateLimiterOptions, type RateLimiterStats } from './recipes/rate-limiter.js';

export type { LockEvent, LocksmithEvents };

/** Who holds a key, as redis_allocator's LockStatus: nobody, the owner asked about, or someone else. */
export type LockStatus = 'free' | 'held' | 'unavailable';

export interface LocksmithStats extends Counters {
  /** Leases held now. */
  held: number;
  /** Acquisitions waiting now. */
  waiting: number;
  /** Time from asking to holding, over the recent grants (0 for an uncontended grant), ms. */
  waitTimes: Percentiles;
  /** Time from grant to release or loss, over the recent leases, ms. */
  holdTimes: Percentiles;
  /** Per recipe made by this Locksmith, by name (the latest one made under a name). */
  pools: { [name: string]: PoolStats };
  elections: { [name: string]: ElectionStats };
  stampedes: { [name: string]: StampedeStats };
  rateLimiters: { [name: string]: RateLimiterStats };
  /** Groups registered by other recipes (Locks.register). */
  [group: string]: unknown;
}

export class Locksmith implements Locks {
  readonly backend: LockBackend;
  readonly defaults: Readonly<ResolvedDefaults>;
  readonly #engine: Engine;
  /** Stats sources by group, then name (recipes register themselves). */
  readonly #sources = new Map<string, Map<string, StatsSource>>();

  constructor(backend: LockBackend, defaults?: LocksmithOptions) {
    this.#engine = new Engine(checkBackend(backend), resolveDefaults(defaults));
    this.backend = backend;
    this.defaults = this.#engine.defaults;
  }

  // ---- exclusive locks -------------------------------------------------------------------------

  /** Waits up to `wait` ms for the lock; rejects with LockTimeoutError when others held it throughout. */
  acquire(key: string, options?: AcquireOptions): Promise<Lock> {
    return mutex.acquire(this.#engine, key, options);
  }

  /** Takes the lock if it is free right now; null if another owner holds it. Never waits. */
  tryAcquire(key: string, options?: TryAcquireOptions): Promise<Lock | null> {
    return mutex.tryAcquire(this.#engine, key, options);
  }

  /**
   * Runs `fn` holding the lock (auto-renewed unless `autoRenew: false`), then releases it. An error from
   * `fn` always propagates unchanged; a failed release is then only reported through the 'error' event.
   * On a clean exit a failed release (e.g. the lock was lost meanwhile) throws LockReleaseError.
   */
  withLock<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    return mutex.withLock(this.#engine, key, fn, options);
  }

  // ---- read-write locks ------------------------------------------------------------------------

  /** Shared lock: any number of readers, no writer. */
  read(key: string, options?: RwOptions): Promise<Lock> {
    return rw.take(this.#engine, rw.READ, key, options);
  }

  /** Exclusive lock on a read-write key: one writer, no readers. */
  write(key: string, options?: RwOptions): Promise<Lock> {
    return rw.take(this.#engine, rw.WRITE, key, options);
  }

  withRead<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: RwOptions): Promise<T> {
    return rw.scoped(this.#engine, rw.READ, key, fn, options);
  }

  withWrite<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: RwOptions): Promise<T> {
    return rw.scoped(this.#engine, rw.WRITE, key, fn, options);
  }

  // ---- other primitives ------------------------------------------------------------------------

  /** A counting semaphore: at most `limit` permits on `key` at once. */
  semaphore(key: string, options: SemaphoreOptions): Semaphore {
    checkKey(key);
    const o = checkOptionNames(options, OPTION_NAMES.semaphore, 'semaphore()');
    if (o.limit === undefined) throw new LockArgumentError('semaphore(): limit is required', { key });
    return new Semaphore(this.#engine, key, checkLimit(o.limit, key));
  }

  /** Acquires every key, in sorted order so two callers can never deadlock; all or nothing. */
  acquireAll(keys: readonly string[], options?: AcquireAllOptions): Promise<LockGroup> {
    return acquireAll(this.#engine, keys, options);
  }

  // ---- recipes (each registers its own stats) --------------------------------------------------

  /** A pool of members (GPUs, licences…) kept by the backend: acquire() lends one. */
  pool(name: string, options?: PoolOptions): Pool {
    return new Pool(this, name, options);
  }

  /** Leader election: campaign() resolves when this candidate leads. */
  election(name: string, options: ElectionOptions): Election {
    return new Election(this, name, options);
  }

  /** A cache-stampede guard: one fetch per stale key across all processes. */
  stampede(options: StampedeOptions): StampedeGuard {
    return new StampedeGuard(this, options);
  }

  /** A rate limiter (GCRA) whose bucket lives in the backend, shared by every process. */
  rateLimiter(name: string, options: RateLimiterOptions): RateLimiter {
    return new RateLimiter(this, name, options);
  }

  /** Method decorator: runs the method holding the lock its arguments name. */
  locked<K extends unknown[]>(key: KeyFn<K>, options?: AcquireOptions) {
    return locked(this, key, options);
  }

  register(group: string, name: string, source: StatsSource): void {
    let named = this.#sources.get(group);
    if (!named) this.#sources.set(group, (named = new Map<string, StatsSource>()));
    named.set(name, source);
  }

  // ---- observation -----------------------------------------------------------------------------

  async inspect(key: string): Promise<LockInfo | null> {
    checkKey(key);
    return this.backend.inspect(key);
  }

  waitFor<T>(key: string, attempt: () => Promise<WaitAttempt<T>>, options: WaitForOptions): Promise<T> {
    try {
      checkKey(key);
      checkFunction(attempt, 'attempt', key);
      const o = checkOptionNames(options, ['wait', 'signal'], 'waitFor()');
      const signal = o.signal === undefined ? undefined : checkSignal(o.signal, key);
      const wait = o.wait === undefined ? this.defaults.wait : checkWait(o.wait, key);
      return this.#engine.waitFor(key, wait, signal, attempt);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  changed(key: string): void {
    this.#engine.changed(checkKey(key));
  }

  async isLocked(key: string): Promise<boolean> {
    const info = await this.inspect(key);
    return info !== null && info.holders.length > 0;
  }

  /**
   * Who holds `key`: 'free', 'held' by `owner`, or 'unavailable' (held by someone else; without an
   * owner, by anyone).
   */
  async status(key: string, owner?: string): Promise<LockStatus> {
    checkKey(key);
    if (owner !== undefined) checkOwner(owner, key);
    const info = await this.inspect(key);
    if (!info || info.holders.length === 0) return 'free';
    return owner !== undefined && info.holders.some((h) => h.owner === owner) ? 'held' : 'unavailable';
  }

  stats(): LocksmithStats {
    const e = this.#engine;
    const groups: Record<string, Record<string, unknown>> = { pools: {}, elections: {}, stampedes: {}, rateLimiters: {} };
    for (const [group, named] of this.#sources) {
      groups[group] = Object.fromEntries([...named].map(([name, source]) => [name, source.stats()]));
    }
    return {
      ...(groups as Pick<LocksmithStats, 'pools' | 'elections' | 'stampedes' | 'rateLimiters'>),
      ...e.counters,
      held: e.held,
      waiting: e.waiting,
      waitTimes: e.waitTimes.percentiles(),
      holdTimes: e.holdTimes.percentiles(),
    };
  }

  on<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): this {
    this.#engine.events.on(event, listener);
    return this;
  }

  once<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): this {
    this.#engine.events.once(event, listener);
    return this;
  }

  off<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): this {
    this.#engine.events.off(event, listener);
    return this;
  }

  reportError(error: unknown, event?: Partial<LockEvent>): void {
    this.#engine.report(error, event, 'recipe');
  }

  /** Stops waiting acquisitions, releases every lease still held (best effort), closes the backend. */
  close(): Promise<void> {
    return this.#engine.close();
  }
}
