// The front object: holds the backend and the defaults, hands out locks and primitives, counts what
// happens, and emits events. Backends stay small because everything above a single lease lives here.

import { EventEmitter, setMaxListeners } from 'node:events';
import type { AcquireRequest, AcquireResult, LeaseMode, LockBackend, LockInfo } from './backend.js';
import {
  DeadlockError,
  LockAcquisitionError,
  LockArgumentError,
  LockError,
  LockExpiredError,
  LockTimeoutError,
} from './errors.js';
import { Lease, Lock, type LeaseHost } from './lock.js';
import {
  OPTION_NAMES,
  checkFunction,
  checkKey,
  checkLimit,
  checkOptionNames,
  checkOwner,
  resolveAcquire,
  resolveDefaults,
  type AcquireOptions,
  type LocksmithOptions,
  type ResolvedAcquire,
  type ResolvedDefaults,
  type RwOptions,
  type TryAcquireOptions,
} from './options.js';
import { acquireAll, type LockGroup, type AcquireAllOptions } from './primitives/multi.js';
import { Semaphore, type SemaphoreOptions } from './primitives/semaphore.js';
import { HoldRegistry, newOwner, runInScope, scopeOwner } from './reentrancy.js';
import { locked, type KeyFn } from './recipes/decorators.js';
import { Election, type ElectionOptions, type ElectionStats } from './recipes/election.js';
import { Pool, type PoolOptions, type PoolStats } from './recipes/pool.js';
import { StampedeGuard, type StampedeOptions, type StampedeStats } from './recipes/stampede.js';
import { RateLimiter, type RateLimiterOptions, type RateLimiterStats } from './recipes/rate-limiter.js';
import { TurnQueue, waitLoop, type Nudge, type Turn } from './waiting.js';
import { Deadlines } from './watchdog.js';
import { settleWithin } from './core/time.js';
import { Wakers } from './backends/shared/wakers.js';


export type LockStatus = 'free' | 'held' | 'unavailable';

export interface LockEvent {
  key: string;
  owner: string;
  fence: bigint;
  mode: LeaseMode;
}

export interface LocksmithEvents {
  acquired: (event: LockEvent & { waited: number }) => void;
  released: (event: LockEvent) => void;
  extended: (event: LockEvent & { expiresAt: number }) => void;
  lost: (event: LockEvent & { error: LockExpiredError }) => void;
  error: (error: unknown, event?: Partial<LockEvent>) => void;
}

export interface LocksmithStats {
  /** Leases granted (reentrant holds not counted again). */
  acquired: number;
  released: number;
  extended: number;
  lost: number;
  /** Acquisitions that gave up because `wait` elapsed. */
  timeouts: number;
  /** Acquisitions that failed because the backend did. */
  failures: number;
  /** Acquisitions that had to wait at least once. */
  contended: number;
  /** Leases held now. */
  held: number;
  /** Acquisitions waiting now. */
  waiting: number;
  /** Total and longest time spent waiting by granted acquisitions, ms. */
  waitTotal: number;
  waitMax: number;
  /** Per recipe made by this Locksmith, by name (the latest one made under a name). */
  pools: { [name: string]: PoolStats };
  elections: { [name: string]: ElectionStats };
  stampedes: { [name: string]: StampedeStats };
  rateLimiters: { [name: string]: RateLimiterStats };
}

/** How long a timed-out acquire waits for its withdrawal from the backend before rejecting. */
const WITHDRAW_WAIT_MS = 1_000;


/** How a writer announces itself to writer-preferring readers; refreshed on every attempt. */
const WRITER_INTENT_MS = 5_000;

/** @internal What a primitive asks the core for. */
export interface LeaseSpec {
  key: string;
  mode: LeaseMode;
  options: ResolvedAcquire;
  limit?: number | undefined;
  /** Read-write locks: true for a write (a waiting writer announces itself), false for a read. */
  writer?: boolean;
}

export class Locksmith {
  readonly backend: LockBackend;
  readonly defaults: Readonly<ResolvedDefaults>;
  readonly #events = new EventEmitter();
  /** Leases held now (watched for expiry), for close() and stats. */
  readonly #leases = new Deadlines<Lease>();
  /** Leases of known owners (explicit or scoped), for reentrancy. */
  readonly #holds = new HoldRegistry<Lease>();
  readonly #closing = new AbortController();
  #closed = false;
  readonly #turns = new TurnQueue();
  /** This process's waiters per key, woken as soon as a local release is sent. */
  readonly #nudges = new Wakers();
  readonly #recipes = { pools: new Map<string, Pool>(), elections: new Map<string, Election>(), stampedes: new Map<string, StampedeGuard>(), rateLimiters: new Map<string, RateLimiter>() };
  #stats: Omit<LocksmithStats, 'held' | 'waiting' | 'pools' | 'elections' | 'stampedes' | 'rateLimiters'> = {
    acquired: 0,
    released: 0,
    extended: 0,
    lost: 0,
    timeouts: 0,
    failures: 0,
    contended: 0,
    waitTotal: 0,
    waitMax: 0,
  };
  #waiting = 0;
  readonly #host: LeaseHost;

  constructor(backend: LockBackend, defaults?: LocksmithOptions) {
    if (!backend || typeof backend !== 'object' || typeof backend.acquire !== 'function') {
      throw new LockArgumentError('new Locksmith(backend): backend must be a LockBackend, such as memoryBackend()');
    }
    this.backend = backend;
    this.defaults = Object.freeze(resolveDefaults(defaults));
    backend.onLost?.((key, owner, reason) => {
      for (const lease of this.#leases) {
        if (lease.key === key && lease.owner === owner) {
          lease.lose(new LockExpiredError(`the ${backend.name} backend lost the lease on "${key}"`, { key, cause: reason }));
        }
      }
    });
    // Every waiter listens on the closing signal; many waiters are normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
    this.#host = {
      backend,
      deadlines: this.#leases,
      leaseEvent: (type, lease, error) => this.#leaseEvent(type, lease, error),
      leaseError: (lease, error) => this.reportError(error, describeLease(lease)),
      releasing: (key) => this.#nudge(key),
    };
  }

  // ---- exclusive locks -------------------------------------------------------------------------

  /** Waits up to `wait` ms for the lock; rejects with LockTimeoutError when others held it throughout. */
  acquire(key: string, options?: AcquireOptions): Promise<Lock> {
    return this.#exclusive('acquire', key, options, OPTION_NAMES.acquire);
  }

  /** Takes the lock if it is free right now; null if another owner holds it. Never waits. */
  tryAcquire(key: string, options?: TryAcquireOptions): Promise<Lock | null> {
    return nullOnTimeout(this.#exclusive('tryAcquire', key, options, OPTION_NAMES.tryAcquire, { wait: 0 }));
  }

  /**
   * Runs `fn` holding the lock (auto-renewed unless `autoRenew: false`), then releases it. An error from
   * `fn` always propagates unchanged; a failed release is then only reported through the 'error' event.
   * On a clean exit a failed release (e.g. the lock was lost meanwhile) throws LockReleaseError.
   */
  withLock<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    return this.scoped(() => this.#exclusive('withLock', key, options, OPTION_NAMES.acquire, {}, true), fn, key);
  }

  // ---- read-write locks ------------------------------------------------------------------------

  /** Shared lock: any number of readers, no writer. */
  read(key: string, options?: RwOptions): Promise<Lock> {
    return this.#rw('read', key, options, false);
  }

  /** Exclusive lock on a read-write key: one writer, no readers. */
  write(key: string, options?: RwOptions): Promise<Lock> {
    return this.#rw('write', key, options, false);
  }

  withRead<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: RwOptions): Promise<T> {
    return this.scoped(() => this.#rw('withRead', key, options, true), fn, key);
  }

  withWrite<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: RwOptions): Promise<T> {
    return this.scoped(() => this.#rw('withWrite', key, options, true), fn, key);
  }

  // ---- other primitives ------------------------------------------------------------------------

  /** A counting semaphore: at most `limit` permits on `key` at once. */
  semaphore(key: string, options: SemaphoreOptions): Semaphore {
    checkKey(key);
    const o = checkOptionNames(options, OPTION_NAMES.semaphore, 'semaphore()');
    if (o.limit === undefined) throw new LockArgumentError('semaphore(): limit is required', { key });
    return new Semaphore(this, key, checkLimit(o.limit, key));
  }

  /** Acquires every key, in sorted order so two callers can never deadlock; all or nothing. */
  acquireAll(keys: readonly string[], options?: AcquireAllOptions): Promise<LockGroup> {
    return acquireAll(this, keys, options);
  }

  // ---- recipes ---------------------------------------------------------------------------------

  /** A pool of members (GPUs, licences…): acquire() lends any free one. */
  pool(name: string, options: PoolOptions): Pool {
    const pool = new Pool(this, name, options);
    this.#recipes.pools.set(pool.name, pool);
    return pool;
  }

  /** Leader election: campaign() resolves when this candidate leads. */
  election(name: string, options: ElectionOptions): Election {
    const election = new Election(this, name, options);
    this.#recipes.elections.set(election.name, election);
    return election;
  }

  /** A cache-stampede guard: one fetch per stale key across all processes. */
  stampede(options: StampedeOptions): StampedeGuard {
    const guard = new StampedeGuard(this, options);
    this.#recipes.stampedes.set(guard.name, guard);
    return guard;
  }

  /** A rate limiter (GCRA) whose bucket lives in the backend, shared by every process. */
  rateLimiter(name: string, options: RateLimiterOptions): RateLimiter {
    const limiter = new RateLimiter(this.backend, name, options);
    this.#recipes.rateLimiters.set(limiter.name, limiter);
    return limiter;
  }

  /** Method decorator: runs the method holding the lock its arguments name. */
  locked<K extends unknown[]>(key: KeyFn<K>, options?: AcquireOptions) {
    return locked(this, key, options);
  }

  // ---- observation -----------------------------------------------------------------------------

  async inspect(key: string): Promise<LockInfo | null> {
    checkKey(key);
    return this.backend.inspect(key);
  }

  async isLocked(key: string): Promise<boolean> {
    const info = await this.inspect(key);
    return info !== null && info.holders.length > 0;
  }

  /**
   * Who holds `key`, as redis_allocator's LockStatus: 'free', 'held' by `owner`, or 'unavailable'
   * (held by someone else; without an owner, by anyone).
   */
  async status(key: string, owner?: string): Promise<LockStatus> {
    checkKey(key);
    if (owner !== undefined) checkOwner(owner, key);
    const info = await this.inspect(key);
    if (!info || info.holders.length === 0) return 'free';
    return owner !== undefined && info.holders.some((h) => h.owner === owner) ? 'held' : 'unavailable';
  }

  stats(): LocksmithStats {
    const r = this.#recipes;
    const each = <T, S>(m: Map<string, T>, f: (x: T) => S): { [name: string]: S } => Object.fromEntries([...m].map(([k, v]) => [k, f(v)]));
    return {
      ...this.#stats,
      held: this.#heldCount(),
      waiting: this.#waiting,
      pools: each(r.pools, (p) => p.stats()),
      elections: each(r.elections, (e) => e.stats()),
      stampedes: each(r.stampedes, (g) => g.stats()),
      rateLimiters: each(r.rateLimiters, (l) => l.stats()),
    };
  }

  on<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): this {
    this.#events.off(event, listener);
    return this;
  }

  /** Stops waiting acquisitions, releases every lease still held (best effort), closes the backend. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new LockAcquisitionError('the Locksmith was closed'));
    const held = [...this.#leases].filter((l) => l.state === 'held');
    await Promise.all(
      held.map((lease) => lease.release().catch((error: unknown) => this.reportError(error, describeLease(lease)))),
    );
    await this.backend.close();
  }

  /** @internal Reports an error that has no caller to throw to. Never throws itself. */
  reportError(error: unknown, event?: Partial<LockEvent>): void {
    // An 'error' event with no listener would throw from wherever we are (often a timer): don't.
    if (this.#events.listenerCount('error') === 0) return;
    try {
      this.#events.emit('error', error, event);
    } catch {
      // A throwing listener must not break the lock machinery.
    }
  }

  // ---- the core --------------------------------------------------------------------------------

  // Not async: validation throws synchronously into a rejected promise, and the hot path saves a hop.
  #exclusive(
    where: string,
    key: string,
    options: unknown,
    allowed: readonly string[],
    fixed: { wait?: number } = {},
    scoped = false,
  ): Promise<Lock> {
    try {
      checkKey(key);
      const opts = resolveAcquire(key, options, allowed, `${where}()`, this.defaults, scoped || this.defaults.autoRenew);
      if (fixed.wait !== undefined) opts.wait = fixed.wait;
      return this.lease({ key, mode: 'exclusive', options: opts });
    } catch (error) {
      return rejected(error);
    }
  }

  #rw(where: string, key: string, options: unknown, scoped: boolean): Promise<Lock> {
    try {
      checkKey(key);
      const opts = resolveAcquire(key, options, OPTION_NAMES.rw, `${where}()`, this.defaults, scoped || this.defaults.autoRenew);
      const reading = where === 'read' || where === 'withRead';
      return this.lease({ key, mode: reading ? 'shared' : 'exclusive', options: opts, writer: !reading });
    } catch (error) {
      return rejected(error);
    }
  }

  /** @internal Runs `fn` holding the lock from `take`, inside an async scope that reentrant acquires see. */
  async scoped<T>(take: () => Promise<Lock>, fn: (lock: Lock) => Promise<T> | T, key: string): Promise<T> {
    checkFunction(fn, 'fn', key);
    const lock = await take();
    let result: T;
    try {
      result = await runInScope(lock.owner, () => fn(lock));
    } catch (error) {
      // The caller's error wins; ours is only reported.
      await lock.release().catch((releaseError: unknown) => this.reportError(releaseError, describeLock(lock)));
      throw error;
    }
    await lock.release();
    return result;
  }

  /** @internal The one path by which every primitive gets a lease. */
  async lease(spec: LeaseSpec): Promise<Lock> {
    const { key, mode, options } = spec;
    if (this.#closed) throw new LockAcquisitionError('the Locksmith is closed', { key });
    if (mode === 'shared' && !this.backend.capabilities.shared) {
      throw new LockArgumentError(`"${key}": the ${this.backend.name} backend offers exclusive locks only (no read locks or semaphores)`, { key });
    }
    const known = options.owner ?? (options.reentrant ? scopeOwner() : undefined);
    // A fresh owner cannot be holding anything yet, so only a known owner is looked up; leases that
    // can be re-entered later (known or reentrant owners) are recorded.
    if (known !== undefined) {
      const existing = this.#holds.get(key, known);
      if (existing && existing.state === 'held') {
        if (!options.reentrant) {
          throw new DeadlockError(`"${key}" is already held by owner ${known}; pass reentrant: true to re-enter it`, { key });
        }
        if (existing.mode === 'shared' && mode === 'exclusive') {
          throw new DeadlockError(`"${key}": cannot upgrade a read lock to a write lock held by the same owner; it would wait forever`, { key });
        }
        existing.holds += 1;
        return new Lock(existing, this.#disposeError);
      }
    }
    const owner = known ?? newOwner();
    const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : undefined;
    signal?.throwIfAborted();
    const request: AcquireRequest = {
      key,
      owner,
      ttl: options.ttl,
      mode,
      limit: spec.limit,
      writerPreference: mode === 'shared' && options.policy === 'writer-preference',
      intent: spec.writer && options.wait > 0 ? WRITER_INTENT_MS : undefined,
      queue: options.wait > 0,
      rw: spec.writer === undefined ? undefined : options.policy,
      wait: options.wait,
    };

    const { grant, start, waited } = await this.#obtain(request, options, signal ?? this.#closing.signal);
    const lease = new Lease(this.#host, key, owner, mode, grant.fence, options.ttl);
    lease.begin(start, grant.validity ?? options.ttl, options.autoRenew);
    if (known !== undefined || options.reentrant) {
      this.#holds.set(key, owner, lease);
      lease.registered = true;
    }
    const st = this.#stats;
    st.acquired += 1;
    if (waited > 0) {
      st.contended += 1;
      st.waitTotal += waited;
      if (waited > st.waitMax) st.waitMax = waited;
    }
    if (this.#events.listenerCount('acquired') > 0) {
      try {
        this.#events.emit('acquired', { ...describeLease(lease), waited });
      } catch (listenerError) {
        this.reportError(listenerError, describeLease(lease));
      }
    }
    const lock = new Lock(lease, this.#disposeError);
    // The caller stopped caring while the grant was in flight: hand the lease back instead of leaking it.
    if (signal?.aborted || this.#closed) {
      await lock.release().catch((error: unknown) => this.reportError(error, describeLease(lease)));
      throw (signal ?? this.#closing.signal).reason;
    }
    return lock;
  }


  async #attempt(request: AcquireRequest): Promise<AcquireResult> {
    try {
      return await this.backend.acquire(request);
    } catch (error) {
      this.#stats.failures += 1;
      throw error instanceof LockError
        ? error
        : new LockAcquisitionError(`could not acquire "${request.key}": the ${this.backend.name} backend failed`, { key: request.key, cause: error });
    }
  }

  /** Gets a grant for `request`, waiting per `options`; `start` is when the granting attempt was sent. */
  async #obtain(
    request: AcquireRequest,
    options: ResolvedAcquire,
    signal: AbortSignal,
  ): Promise<{ grant: AcquireResult & { granted: true }; start: number; waited: number }> {
    const began = performance.now();
    let start = began;
    // Exclusive waiters queue locally (TurnQueue); a newcomer joins the queue rather than barging past it.
    const queueing = request.mode === 'exclusive' && options.wait > 0;
    let refusal: (AcquireResult & { granted: false }) | undefined;
    if (!(queueing && this.#turns.busy(request.key))) {
      const first = await this.#attempt(request);
      if (first.granted) return { grant: first, start, waited: 0 };
      refusal = first;
    }
    const backend = this.backend;
    let turn: Turn | undefined;
    this.#waiting += 1;
    try {
      const wakes = backend.capabilities.wake && backend.waitForChange !== undefined;
      if (queueing) {
        turn = await this.#turns.enter(request.key, options.wait, signal);
        // The lock changed hands while we queued: try now. With a wake-up the wait loop's first round
        // does that, its subscription armed first; trying here too would send two attempts in a row.
        if ((turn.queued || !refusal) && !wakes) {
          start = performance.now();
          const again = await this.#attempt(request);
          if (again.granted) return { grant: again, start, waited: performance.now() - began };
          refusal = again;
        }
      }
      const outcome = await waitLoop(
        {
          key: request.key,
          wait: options.wait,
          since: began,
          signal,
          backoff: this.defaults.backoff,
          wake: wakes ? (key, signal) => backend.waitForChange!(key, signal) : undefined,
          nudge: (key) => this.#nudged(key),
        },
        refusal ?? {},
        async () => {
          start = performance.now();
          const r = await this.#attempt(request);
          return r.granted ? { value: r } : r;
        },
      );
      return { grant: outcome.value, start, waited: performance.now() - began };
    } catch (error) {
      if (error instanceof LockTimeoutError) this.#stats.timeouts += 1;
      // A waiter that gives up withdraws whatever it left on the backend: a writer's announced intent
      // (or readers would hold back for nothing), a place in a fair or server-side queue.
      // Owner-checked, so harmless. A timeout rejects once that is done (briefly bounded), so the
      // caller's next step sees no trace of the wait; an abort rejects at once.
      if (options.wait > 0) {
        const withdrawn = backend.release(request.key, request.owner).catch((e: unknown) => void this.reportError(e, request));
        if (error instanceof LockTimeoutError) await settleWithin(withdrawn, WITHDRAW_WAIT_MS);
      }
      throw error;
    } finally {
      turn?.leave();
      this.#waiting -= 1;
    }
  }

  /**
   * A release by this process, heard for one round of a wait: the core nudges as soon as the release
   * is sent, before the backend confirms it, so it is only a hint to try again now. A callback in a
   * set, not an AbortController per round: those cost about half of an in-process handoff (measured,
   * bench/memory.ts).
   */
  #nudged(key: string): Nudge {
    let cancel!: () => void;
    const done = new Promise<void>((resolve) => (cancel = this.#nudges.add(key, resolve)));
    return { done, cancel };
  }

  #nudge(key: string): void {
    this.#nudges.wake(key);
  }

  readonly #disposeError = (error: unknown): void => {
    this.reportError(error, error instanceof LockError && error.key ? { key: error.key } : undefined);
  };

  #heldCount(): number {
    return this.#leases.size;
  }

  #leaseEvent(type: 'extended' | 'released' | 'lost', lease: Lease, error?: LockError): void {
    if (type !== 'extended' && lease.registered) this.#holds.delete(lease.key, lease.owner, lease);
    this.#stats[type] += 1;
    if (this.#events.listenerCount(type) === 0) return;
    const event = describeLease(lease);
    try {
      if (type === 'extended') this.#events.emit(type, { ...event, expiresAt: lease.expiresAt });
      else if (type === 'lost') this.#events.emit(type, { ...event, error });
      else this.#events.emit(type, event);
    } catch (listenerError) {
      this.reportError(listenerError, event);
    }
  }
}

function describeLease(lease: Lease): LockEvent {
  return { key: lease.key, owner: lease.owner, fence: lease.fence, mode: lease.mode };
}

function describeLock(lock: Lock): LockEvent {
  return { key: lock.key, owner: lock.owner, fence: lock.fence, mode: lock.mode };
}

/** A rejected promise from a synchronous throw (validation errors are always Errors). */
export function rejected(error: unknown): Promise<never> {
  return Promise.reject(error instanceof Error ? error : new Error(String(error)));
}

/** @internal tryAcquire-style: a timeout means "not now", which is null. */
export async function nullOnTimeout<T>(pending: Promise<T>): Promise<T | null> {
  try {
    return await pending;
  } catch (error) {
    if (error instanceof LockTimeoutError) return null;
    throw error;
  }
}
