// Getting a grant: the first try, this process's queue of exclusive waiters, the one wait loop, and
// the withdrawal of whatever a waiter that gives up left on the backend.

import { performance } from 'node:perf_hooks';
import type { AcquireRequest, AcquireResult, LeaseMode, LockBackend } from '../backend.js';
import { LockAcquisitionError, LockError, LockTimeoutError } from '../errors.js';
import type { Backoff, ResolvedAcquire } from '../options.js';
import { Wakers } from '../backends/shared/wakers.js';
import { Deadlines, type Expiring } from './deadlines.js';
import type { LockEvent } from './events.js';
import type { Counters } from './stats.js';
import { settleWithin } from './time.js';
import { TurnQueue, type Turn } from './turns.js';
import { waitLoop, type Attempt, type Listeners } from './waiting.js';

/** How long a timed-out acquire waits for its withdrawal from the backend before rejecting. */
const WITHDRAW_WAIT_MS = 1_000;

/** How a writer announces itself to writer-preferring readers; refreshed on every attempt. */
const WRITER_INTENT_MS = 5_000;

/** What a primitive asks the engine for. */
export interface LeaseSpec {
  key: string;
  mode: LeaseMode;
  options: ResolvedAcquire;
  /** Shared leases only: at most this many holders (a semaphore). */
  limit?: number | undefined;
  /** Read-write locks only: true for a write (a waiting writer announces itself), false for a read. */
  writer?: boolean | undefined;
}

type Granted = AcquireResult & { granted: true };
type Refused = AcquireResult & { granted: false };

export interface Obtained {
  grant: Granted;
  /** When the granting attempt was sent (performance.now()): local validity counts from there. */
  start: number;
  /** ms spent waiting (0 when the first attempt succeeded). */
  waited: number;
  /**
   * This process's turn on the key, when the grant came through its queue of exclusive waiters: the
   * lease holds it and passes it to the next waiter as its release is sent (or it is lost), so that
   * waiter's first attempt finds the key free instead of waiting on the backend while we hold it.
   */
  turn?: Turn | undefined;
}

/** The backend's wake-up on one key, shared by this process's waiters on it while there are any. */
interface Watch {
  /** Waiters on the key now (queued ones included, so the watch outlives each head's turn). */
  count: number;
  controller: AbortController | undefined;
  /** A waitForChange is pending: it has not fired since it was armed. */
  armed: boolean;
  /** waitForChange failed: waiters on this key poll instead. */
  broken: boolean;
}

/** Reason given when a watch ends: preallocated, as abort() without one builds a DOMException. */
const ENDED = Object.freeze({ reason: 'no more waiters' });

/** An exclusive request that may wait takes its turn in this process's queue on the key (TurnQueue). */
const queues = (request: AcquireRequest): boolean => request.mode === 'exclusive' && request.queue === true;

export class Obtainer implements Listeners {
  readonly #backend: LockBackend;
  readonly #backoff: Backoff;
  readonly #counters: Counters;
  readonly #closing: AbortSignal;
  readonly #report: (error: unknown, event: Partial<LockEvent>) => void;
  /** The one timer behind every wait's deadline and safety poll. */
  readonly #timers = new Deadlines<Expiring>({ keepAlive: true });
  readonly #turns = new TurnQueue(this.#timers);
  /** This process's waiters per key, woken by a local release (as soon as it is sent) or the backend. */
  readonly #wakers = new Wakers();
  readonly #watches = new Map<string, Watch>();
  readonly #wakes: boolean;
  #waiting = 0;

  constructor(
    backend: LockBackend,
    backoff: Backoff,
    counters: Counters,
    closing: AbortSignal,
    report: (error: unknown, event: Partial<LockEvent>) => void,
  ) {
    this.#backend = backend;
    this.#backoff = backoff;
    this.#counters = counters;
    this.#closing = closing;
    this.#report = report;
    this.#wakes = backend.capabilities.wake && backend.waitForChange !== undefined;
  }

  /** Acquisitions waiting now. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * A release of `key` by this process has been sent: its waiters may try now. Only a hint (the
   * backend has not confirmed it), but on a shared connection their attempt goes out after it.
   */
  released(key: string): void {
    this.#wakers.wake(key);
  }

  /** The Locksmith is closing: every waiter wakes (and finds it closed), queued ones are rejected. */
  close(): void {
    this.#turns.close(this.#closing.reason);
    this.#wakers.wakeAll();
  }

  wakes(key: string): boolean {
    return this.#wakes && this.#watches.get(key)?.broken !== true;
  }

  listen(key: string, wake: () => void): () => void {
    const watch = this.#watches.get(key);
    if (watch && this.#wakes && !watch.armed && !watch.broken) {
      watch.armed = true;
      watch.controller ??= new AbortController();
      this.#backend.waitForChange!(key, watch.controller.signal).then(
        () => {
          watch.armed = false;
          this.#wakers.wake(key);
        },
        () => {
          watch.broken = true;
          this.#wakers.wake(key);
        },
      );
    }
    return this.#wakers.add(key, wake);
  }

  #enter(key: string): void {
    this.#waiting += 1;
    const watch = this.#watches.get(key);
    if (watch) watch.count += 1;
    else this.#watches.set(key, { count: 1, controller: undefined, armed: false, broken: false });
  }

  #leave(key: string): void {
    this.#waiting -= 1;
    const watch = this.#watches.get(key)!;
    if (--watch.count > 0) return;
    this.#watches.delete(key);
    watch.controller?.abort(ENDED);
  }

  /**
   * The one wait loop around a caller's own attempt (a recipe's, through Locks.waitFor): woken by
   * changes of `key` as an acquire's waiters are. `signal`: the caller's, with the closing in it.
   */
  async waitFor<T>(key: string, wait: number, signal: AbortSignal | undefined, attempt: Attempt<T>): Promise<T> {
    const since = performance.now();
    const first = await attempt();
    if ('value' in first) return first.value;
    this.#enter(key);
    try {
      const plan = { key, wait, since, signal, closing: this.#closing, backoff: this.#backoff, listeners: this, timers: this.#timers };
      return (await waitLoop(plan, first, attempt)).value;
    } catch (error) {
      if (error instanceof LockTimeoutError) this.#counters.timeouts += 1;
      throw error;
    } finally {
      this.#leave(key);
    }
  }

  /** What a lease spec asks of the backend. */
  request(spec: LeaseSpec, owner: string): AcquireRequest {
    const { options } = spec;
    return {
      key: spec.key,
      owner,
      ttl: options.ttl,
      mode: spec.mode,
      limit: spec.limit,
      writerPreference: spec.mode === 'shared' && options.policy === 'writer-preference',
      intent: spec.writer && options.wait > 0 ? WRITER_INTENT_MS : undefined,
      queue: options.wait > 0,
      rw: spec.writer === undefined ? undefined : options.policy,
      wait: options.wait,
    };
  }

  /**
   * Whether the first attempt may go out now. Exclusive waiters queue locally (TurnQueue): a
   * newcomer joins the queue rather than barging past it.
   */
  mayTry(request: AcquireRequest): boolean {
    return !(queues(request) && this.#turns.busy(request.key));
  }

  /**
   * After a refused first attempt (or none, see mayTry): waits for a grant. `began`: when the first
   * attempt was sent; `signal`: the caller's (with the closing in it), if it gave one.
   */
  async obtain(request: AcquireRequest, refusal: Refused | undefined, began: number, signal: AbortSignal | undefined): Promise<Obtained> {
    const queueing = queues(request);
    this.#enter(request.key);
    let turn: Turn | undefined;
    let obtained: Obtained | undefined;
    try {
      this.#closing.throwIfAborted();
      if (queueing) turn = await this.#turns.enter(request.key, request.wait ?? 0, signal);
      if (turn) request.head = true;
      obtained = await this.#wait(request, refusal, turn, began, signal);
      // Where the backend keeps the line (fifo), the next waiter here joins it while this one holds.
      if (this.#backend.capabilities.fifo) turn?.leave();
      else obtained.turn = turn;
      return obtained;
    } catch (error) {
      await this.#gaveUp(request, error);
      throw error;
    } finally {
      // A granted waiter keeps its turn until it lets the lease go (see Obtained.turn).
      if (!obtained) turn?.leave();
      this.#leave(request.key);
    }
  }

  async #wait(
    request: AcquireRequest,
    refusal: Refused | undefined,
    turn: Turn | undefined,
    began: number,
    signal: AbortSignal | undefined,
  ): Promise<Obtained> {
    let start = began;
    // Our turn came because the holder before us let go (or we never tried): try now. Refused, the
    // wait loop listens before it tries again, so no release goes unheard.
    if (turn && (turn.queued || !refusal)) {
      start = performance.now();
      const again = await this.#attempt(request);
      if (again.granted) return { grant: again, start, waited: performance.now() - began };
      refusal = again;
    }
    const plan = {
      key: request.key,
      wait: request.wait ?? 0,
      since: began,
      signal,
      closing: this.#closing,
      backoff: this.#backoff,
      listeners: this,
      timers: this.#timers,
    };
    const outcome = await waitLoop(plan, refusal ?? {}, async () => {
      start = performance.now();
      const r = await this.#attempt(request);
      return r.granted ? { value: r } : r;
    });
    return { grant: outcome.value, start, waited: performance.now() - began };
  }

  /**
   * A waiter that gives up withdraws whatever it left on the backend: a writer's announced intent (or
   * readers would hold back for nothing), a place in a fair or server-side queue. Owner-checked, so
   * harmless. A timeout rejects once that is done (briefly bounded), so the caller's next step sees no
   * trace of the wait; an abort rejects at once.
   */
  async #gaveUp(request: AcquireRequest, error: unknown): Promise<void> {
    if (error instanceof LockTimeoutError) this.#counters.timeouts += 1;
    if (!request.queue) return;
    const withdrawn = this.#backend.release(request.key, request.owner).catch((e: unknown) => this.#report(e, request));
    if (error instanceof LockTimeoutError) await settleWithin(withdrawn, WITHDRAW_WAIT_MS);
  }

  async #attempt(request: AcquireRequest): Promise<AcquireResult> {
    try {
      return await this.#backend.acquire(request);
    } catch (error) {
      throw this.failure(error, request);
    }
  }

  /** A failed attempt, counted and explained (the engine's first attempt uses it too). */
  failure(error: unknown, request: AcquireRequest): LockError {
    this.#counters.failures += 1;
    return error instanceof LockError
      ? error
      : new LockAcquisitionError(`could not acquire "${request.key}": the ${this.#backend.name} backend failed`, {
          key: request.key,
          cause: error,
        });
  }
}
