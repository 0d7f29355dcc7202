// The engine: one backend, and everything above a single lease that every primitive shares — getting
// a grant (the one wait loop, src/core/obtain.ts), the lease lifecycle (grant → renew → lose or
// release, src/core/lease.ts), reentrancy, events and counters. It knows no primitive and no recipe:
// they describe what they want as a LeaseSpec and get a Lock back.

import { performance } from 'node:perf_hooks';
import { setMaxListeners } from 'node:events';
import type { AcquireResult, LeaseMode, LockBackend } from '../backend.js';
import { DeadlockError, LockAcquisitionError, LockArgumentError, LockError, LockExpiredError } from '../errors.js';
import { Lock } from '../lock.js';
import { checkFunction, checkKey, resolveAcquire, type ResolvedAcquire, type ResolvedDefaults } from '../options.js';
import { acquireChannel, trace, traced, type LockTraceContext } from './channels.js';
import { Events, type ErrorKind, type LockEvent } from './events.js';
import { Lease, type LeaseHost } from './lease.js';
import { Obtainer, type LeaseSpec, type Obtained } from './obtain.js';

export type { LeaseSpec };
import { HoldRegistry, newOwner, runInScope, scopeOwner } from './reentrancy.js';
import { counters, Recent, type Counters } from './stats.js';
import { Deadlines } from './deadlines.js';
import type { Attempt } from './waiting.js';

/** How a public call takes a lease: its name for messages, the options it accepts, what it fixes. */
export interface CallShape {
  readonly name: string;
  readonly allowed: readonly string[];
  /** A with* scope: renews by default, whatever the Locksmith's autoRenew default. */
  readonly scoped: boolean;
  /** A wait the caller cannot choose (tryAcquire: 0). */
  readonly wait?: number;
}

export class Engine {
  readonly backend: LockBackend;
  readonly defaults: Readonly<ResolvedDefaults>;
  readonly events: Events;
  readonly counters: Counters = counters();
  readonly waitTimes = new Recent();
  readonly holdTimes = new Recent();
  /** Leases held now (watched for expiry), for close() and stats. */
  readonly #leases = new Deadlines<Lease>();
  /** Leases of known owners (explicit or scoped), for reentrancy. */
  readonly #holds = new HoldRegistry<Lease>();
  readonly #closing = new AbortController();
  /** Resolved options of calls made without any, per kind of call (see #withoutOptions). */
  readonly #plain = new Map<CallShape, ResolvedAcquire>();
  readonly #obtainer: Obtainer;
  readonly #host: LeaseHost;
  #closed = false;

  constructor(backend: LockBackend, defaults: ResolvedDefaults) {
    this.backend = backend;
    this.defaults = Object.freeze(defaults);
    this.events = new Events(defaults.logger);
    // Every waiter listens on the closing signal; many waiters are normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
    this.#obtainer = new Obtainer(backend, defaults.backoff, this.counters, this.#closing.signal, (error, event) =>
      this.report(error, event, 'withdraw'),
    );
    this.#host = {
      backend,
      deadlines: this.#leases,
      leaseEvent: (type, lease, error) => this.#leaseEvent(type, lease, error),
      leaseError: (lease, error) => this.report(error, describe(lease), 'renewal'),
      releasing: (key) => this.#obtainer.released(key),
    };
    backend.onLost?.((key, owner, reason) => {
      for (const lease of this.#leases) {
        if (lease.key === key && lease.owner === owner) {
          lease.lose(new LockExpiredError(`the ${backend.name} backend lost the lease on "${key}"`, { key, cause: reason }));
        }
      }
    });
  }

  get held(): number {
    return this.#leases.size;
  }

  get waiting(): number {
    return this.#obtainer.waiting;
  }

  report(error: unknown, event: Partial<LockEvent> | undefined, kind: ErrorKind): void {
    this.events.report(error, event, kind);
  }

  /**
   * Validates a public call's key and options, then leases. Not async: validation throws synchronously
   * into a rejected promise, and the hot path saves a hop.
   */
  take(call: CallShape, key: unknown, options: unknown, shape: Omit<LeaseSpec, 'key' | 'options'>): Promise<Lock> {
    try {
      const k = checkKey(key);
      const opts = options === undefined ? this.#withoutOptions(call) : this.#resolve(call, k, options);
      return this.lease({ key: k, mode: shape.mode, options: opts, limit: shape.limit, writer: shape.writer });
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #resolve(call: CallShape, key: string, options: unknown): ResolvedAcquire {
    const opts = resolveAcquire(key, options, call.allowed, call.name, this.defaults, call.scoped || this.defaults.autoRenew);
    if (call.wait !== undefined) opts.wait = call.wait;
    return opts;
  }

  /** A call made with no options (most are) gets the defaults, resolved once per kind of call. */
  #withoutOptions(call: CallShape): ResolvedAcquire {
    let opts = this.#plain.get(call);
    if (!opts) this.#plain.set(call, (opts = Object.freeze(this.#resolve(call, '', undefined))));
    return opts;
  }

  /** Runs `fn` holding the lock from `take`, inside an async scope that reentrant acquires see. */
  async scoped<T>(take: () => Promise<Lock>, fn: (lock: Lock) => Promise<T> | T, key: string): Promise<T> {
    checkFunction(fn, 'fn', key);
    const lock = await take();
    let result: T;
    try {
      result = await runInScope(lock.owner, () => fn(lock));
    } catch (error) {
      // The caller's error wins; ours is only reported.
      await lock.release().catch((releaseError: unknown) => this.report(releaseError, { key: lock.key, owner: lock.owner }, 'release'));
      throw error;
    }
    await lock.release();
    return result;
  }

  /** The one path by which every primitive gets a lease. */
  lease(spec: LeaseSpec): Promise<Lock> {
    if (!traced(acquireChannel)) return this.#lease(spec, undefined);
    const ctx: LockTraceContext = { key: spec.key, backend: this.backend.name, mode: spec.mode };
    return trace(acquireChannel, ctx, (c) => this.#lease(spec, c), 'acquired');
  }

  async #lease(spec: LeaseSpec, trace: LockTraceContext | undefined): Promise<Lock> {
    const { key, mode, options } = spec;
    if (this.#closed) throw new LockAcquisitionError('the Locksmith is closed', { key });
    if (mode === 'shared' && !this.backend.capabilities.shared) {
      throw new LockArgumentError(`"${key}": the ${this.backend.name} backend offers exclusive locks only (no read locks or semaphores)`, {
        key,
      });
    }
    const known = options.owner ?? (options.reentrant ? scopeOwner() : undefined);
    // A fresh owner cannot be holding anything yet, so only a known owner is looked up.
    if (known !== undefined) {
      const existing = this.#reenter(key, known, mode, options.reentrant);
      if (existing) {
        if (trace) Object.assign(trace, { owner: known, fence: existing.fence, waited: 0, outcome: 'reentered' });
        return existing;
      }
    }
    const owner = known ?? newOwner();
    const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : undefined;
    signal?.throwIfAborted();
    const request = this.#obtainer.request(spec, owner);
    const began = performance.now();
    // The first attempt is made here rather than in the obtainer: an uncontended acquire then costs
    // one async frame, which is most of what it costs on an in-process backend.
    let first: AcquireResult | undefined;
    if (this.#obtainer.mayTry(request)) {
      try {
        first = await this.backend.acquire(request);
      } catch (error) {
        throw this.#obtainer.failure(error, request);
      }
    }
    let grant: AcquireResult & { granted: true };
    let start = began;
    let waited = 0;
    let turn: Obtained['turn'];
    if (first?.granted) grant = first;
    else ({ grant, start, waited, turn } = await this.#obtainer.obtain(request, first, began, signal));
    const lease = new Lease(this.#host, key, owner, mode, grant.fence, options.ttl);
    lease.turn = turn;
    // A lease kept by a connection has no local deadline: the backend reports its loss (onLost).
    const validity = this.backend.capabilities.expiry === 'connection' ? Infinity : (grant.validity ?? options.ttl);
    lease.begin(start, validity, options.autoRenew);
    // Leases that can be re-entered later (known or reentrant owners) are recorded.
    if (known !== undefined || options.reentrant) {
      this.#holds.set(key, owner, lease);
      lease.registered = true;
    }
    this.#granted(lease, waited);
    if (trace) Object.assign(trace, { owner, fence: lease.fence, waited });
    const lock = new Lock(lease, this.#disposeError);
    // The caller stopped caring while the grant was in flight: hand the lease back instead of leaking it.
    if (signal?.aborted || this.#closed) {
      await lock.release().catch((error: unknown) => this.report(error, describe(lease), 'release'));
      throw (signal ?? this.#closing.signal).reason;
    }
    return lock;
  }

  /** Runs the one wait loop on `key` around `attempt` (Locks.waitFor; arguments checked by the caller). */
  async waitFor<T>(key: string, wait: number, signal: AbortSignal | undefined, attempt: Attempt<T>): Promise<T> {
    if (this.#closed) throw new LockAcquisitionError('the Locksmith is closed', { key });
    signal?.throwIfAborted();
    const s = signal ? AbortSignal.any([signal, this.#closing.signal]) : undefined;
    return this.#obtainer.waitFor(key, wait, s, attempt);
  }

  /** Wakes this process's waiters on `key` now, as a release sent from here does. */
  changed(key: string): void {
    this.#obtainer.released(key);
  }

  /** Stops waiting acquisitions, releases every lease still held (best effort), closes the backend. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new LockAcquisitionError('the Locksmith was closed'));
    this.#obtainer.close();
    const held = [...this.#leases].filter((l) => l.state === 'held');
    await Promise.all(held.map((lease) => lease.release().catch((error: unknown) => this.report(error, describe(lease), 'release'))));
    await this.backend.close();
  }

  /** Another hold on a lease `owner` has on `key`, when reentry is allowed; throws when it is not. */
  #reenter(key: string, owner: string, mode: LeaseMode, reentrant: boolean): Lock | undefined {
    const existing = this.#holds.get(key, owner);
    if (!existing || existing.state !== 'held') return undefined;
    if (!reentrant) {
      throw new DeadlockError(`"${key}" is already held by owner ${owner}; pass reentrant: true to re-enter it`, { key });
    }
    if (existing.mode === 'shared' && mode === 'exclusive') {
      throw new DeadlockError(`"${key}": cannot upgrade a read lock to a write lock held by the same owner; it would wait forever`, {
        key,
      });
    }
    existing.holds += 1;
    return new Lock(existing, this.#disposeError);
  }

  #granted(lease: Lease, waited: number): void {
    const c = this.counters;
    c.acquired += 1;
    if (waited > 0) {
      c.contended += 1;
      c.waitTotal += waited;
      if (waited > c.waitMax) c.waitMax = waited;
    }
    this.waitTimes.add(waited);
    if (this.events.heard('acquired')) this.events.emit('acquired', { ...describe(lease), waited });
  }

  readonly #disposeError = (error: unknown): void => {
    this.report(error, error instanceof LockError && error.key ? { key: error.key } : undefined, 'release');
  };

  #leaseEvent(type: 'extended' | 'released' | 'lost', lease: Lease, error?: LockError): void {
    if (type !== 'extended') {
      if (lease.registered) this.#holds.delete(lease.key, lease.owner, lease);
      this.holdTimes.add(performance.now() - lease.grantedAt);
    }
    this.counters[type] += 1;
    if (!this.events.heard(type)) return;
    const event = describe(lease);
    if (type === 'extended') this.events.emit(type, { ...event, expiresAt: lease.expiresAt });
    else if (type === 'lost') this.events.emit(type, { ...event, error: error as LockExpiredError });
    else this.events.emit(type, event);
  }
}

export function describe(lease: { key: string; owner: string; fence: bigint; mode: LeaseMode }): LockEvent {
  return { key: lease.key, owner: lease.owner, fence: lease.fence, mode: lease.mode };
}
