// Getting a grant: the first try, this process's queue of exclusive waiters, the one wait loop, and
// the withdrawal of whatever a waiter that gives up left on the backend.

import type { AcquireRequest, AcquireResult, LeaseMode, LockBackend } from '../backend.js';
import { LockAcquisitionError, LockError, LockTimeoutError } from '../errors.js';
import type { Backoff, ResolvedAcquire } from '../options.js';
import { Wakers } from '../backends/shared/wakers.js';
import type { LockEvent } from './events.js';
import type { Counters } from './stats.js';
import { settleWithin } from './time.js';
import { TurnQueue, waitLoop, type Nudge, type Turn } from './waiting.js';

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
}

export class Obtainer {
  readonly #backend: LockBackend;
  readonly #backoff: Backoff;
  readonly #counters: Counters;
  readonly #report: (error: unknown, event: Partial<LockEvent>) => void;
  readonly #turns = new TurnQueue();
  /** This process's waiters per key, woken as soon as a local release is sent. */
  readonly #nudges = new Wakers();
  #waiting = 0;

  constructor(backend: LockBackend, backoff: Backoff, counters: Counters, report: (error: unknown, event: Partial<LockEvent>) => void) {
    this.#backend = backend;
    this.#backoff = backoff;
    this.#counters = counters;
    this.#report = report;
  }

  /** Acquisitions waiting now. */
  get waiting(): number {
    return this.#waiting;
  }

  /** A release of `key` by this process has been sent: its waiters may try now. */
  released(key: string): void {
    this.#nudges.wake(key);
  }

  async obtain(spec: LeaseSpec, owner: string, signal: AbortSignal): Promise<Obtained> {
    const { options } = spec;
    const request: AcquireRequest = {
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
    const began = performance.now();
    // Exclusive waiters queue locally (TurnQueue); a newcomer joins the queue rather than barging past it.
    const queueing = request.mode === 'exclusive' && options.wait > 0;
    let refusal: Refused | undefined;
    if (!(queueing && this.#turns.busy(request.key))) {
      const first = await this.#attempt(request);
      if (first.granted) return { grant: first, start: began, waited: 0 };
      refusal = first;
    }
    this.#waiting += 1;
    let turn: Turn | undefined;
    try {
      if (queueing) turn = await this.#turns.enter(request.key, options.wait, signal);
      return await this.#wait(request, refusal, turn, began, signal);
    } catch (error) {
      await this.#gaveUp(request, error);
      throw error;
    } finally {
      turn?.leave();
      this.#waiting -= 1;
    }
  }

  async #wait(request: AcquireRequest, refusal: Refused | undefined, turn: Turn | undefined, began: number, signal: AbortSignal): Promise<Obtained> {
    const backend = this.#backend;
    const wakes = backend.capabilities.wake && backend.waitForChange !== undefined;
    let start = began;
    // The lock changed hands while we queued: try now. With a wake-up the wait loop's first round
    // does that, its subscription armed first; trying here too would send two attempts in a row.
    if (turn && (turn.queued || !refusal) && !wakes) {
      start = performance.now();
      const again = await this.#attempt(request);
      if (again.granted) return { grant: again, start, waited: performance.now() - began };
      refusal = again;
    }
    const outcome = await waitLoop(
      {
        key: request.key,
        wait: request.wait ?? 0,
        since: began,
        signal,
        backoff: this.#backoff,
        wake: wakes ? (key, s) => backend.waitForChange!(key, s) : undefined,
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
      this.#counters.failures += 1;
      throw error instanceof LockError
        ? error
        : new LockAcquisitionError(`could not acquire "${request.key}": the ${this.#backend.name} backend failed`, { key: request.key, cause: error });
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
}
