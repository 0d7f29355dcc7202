// The one wait loop. Each round: start listening for a change on the key, then try; when refused,
// sleep until woken, until the blocking lease expires, or until a backoff delay passes, whichever
// comes first. Listening before trying closes the window in which a release could go unnoticed.

import type { Backoff } from '../options.js';
import { LockTimeoutError } from '../errors.js';

export type Refusal = { retryAfter?: number | undefined };
export type Attempt<T> = () => Promise<{ value: T } | Refusal>;

export interface WaitPlan {
  key: string;
  /** ms; 0 tries once, Infinity waits until `signal` aborts. */
  wait: number;
  signal: AbortSignal | undefined;
  backoff: Backoff;
  /** When the wait began (performance.now()), if before this call; `wait` counts from then. */
  since?: number | undefined;
  /** The backend's wake-up, when it has one. */
  wake?: ((key: string, signal: AbortSignal) => Promise<void>) | undefined;
  /**
   * This process's own releases of the key, heard at once (with a wake-up only): registered for one
   * round, before its attempt. A plain callback, not a backend subscription: a round that a local
   * release ends leaves the backend's subscription armed for the next round.
   */
  nudge?: ((key: string) => Nudge) | undefined;
}

export interface Nudge {
  readonly done: Promise<void>;
  cancel(): void;
}

export interface WaitResult<T> {
  value: T;
  /** ms spent waiting (0 when the first attempt succeeded). */
  waited: number;
  attempts: number;
}

/** Full jitter (AWS architecture blog): uniform in [0, min(max, initial * 2^n)]. */
export function backoffDelay(backoff: Backoff, attempt: number): number {
  const cap = Math.min(backoff.max, backoff.initial * 2 ** Math.min(attempt, 30));
  return Math.random() * cap;
}

/** A timer that can be cancelled without an AbortController (they are slow to make and to abort). */
function timer(ms: number): { done: Promise<void>; cancel: () => void } {
  let handle: NodeJS.Timeout | undefined;
  // Not unref'd: a caller awaiting a lock is foreground work, and must keep the process alive.
  const done = new Promise<void>((resolve) => (handle = setTimeout(resolve, ms)));
  return { done, cancel: () => clearTimeout(handle) };
}

/** Waits after the refusal `first` (the caller made the uncontended attempt itself). */
export async function waitLoop<T>(plan: WaitPlan, first: Refusal, attempt: Attempt<T>): Promise<WaitResult<T>> {
  const { signal, key } = plan;
  if (plan.wait === 0) throw new LockTimeoutError(`"${key}" is held by another owner`, { key, waited: 0 });
  signal?.throwIfAborted();
  // The wait began before the caller's first attempt (and any local queueing): count from there.
  const start = plan.since ?? performance.now();
  let refused = first;
  // One subscription at a time: it stays armed across rounds that end by timer, and is renewed only
  // after it fired. A failed wake-up drops us to plain backoff polling.
  let wake = plan.wake;
  const unsubscribe = wake ? new AbortController() : undefined;
  let subscription: Promise<void> | undefined;
  let fired = false;
  let onAbort: (() => void) | undefined;
  const aborted = signal
    ? new Promise<void>((resolve) => signal.addEventListener('abort', (onAbort = () => resolve()), { once: true }))
    : undefined;
  try {
    for (let n = 1; ; n++) {
      if (wake && unsubscribe && !subscription) {
        fired = false;
        subscription = wake(key, unsubscribe.signal).then(
          () => void (fired = true),
          () => {
            fired = true;
            wake = undefined;
          },
        );
      }
      const local = wake ? plan.nudge?.(key) : undefined;
      try {
        // With a wake-up, every round tries (a fresh subscription first, so a release since the last
        // refusal is seen by this attempt and one after it wakes us); without, every round after a sleep.
        if (wake || n > 1) {
          const again = await attempt();
          if ('value' in again) return { value: again.value, waited: performance.now() - start, attempts: n + 1 };
          refused = again;
        }
        const remaining = plan.wait - (performance.now() - start);
        if (remaining <= 0) {
          const waited = Math.round(performance.now() - start);
          throw new LockTimeoutError(`"${key}" was still held by another owner after waiting ${waited} ms`, { key, waited });
        }
        // Woken waiters still poll slowly in case a notification is lost; pollers back off with jitter.
        let delay = wake ? plan.backoff.max : backoffDelay(plan.backoff, n - 1);
        if (refused.retryAfter !== undefined) delay = Math.min(delay, Math.max(refused.retryAfter, 1));
        const sleep = timer(Math.min(delay, remaining));
        try {
          await Promise.race([sleep.done, ...(wake && subscription ? [subscription] : []), ...(local ? [local.done] : []), ...(aborted ? [aborted] : [])]);
        } finally {
          sleep.cancel();
        }
      } finally {
        local?.cancel();
      }
      signal?.throwIfAborted();
      if (fired) subscription = undefined;
    }
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    unsubscribe?.abort(ENDED);
  }
}

/** Reason given when a wait ends its subscription: preallocated, as abort() without one builds a DOMException. */
const ENDED = Object.freeze({ reason: 'wait ended' });

export interface Turn {
  /** Whether the caller had to wait behind others (the key's state has changed since). */
  queued: boolean;
  /** Hands the turn to the next waiter; call exactly once. */
  leave(): void;
}

interface Queued {
  admit(): void;
}

/**
 * This process's exclusive waiters per key, first come first served: only the head of a key's queue
 * waits on the backend. Without it every local waiter is woken by each release and all but one lose
 * (a thundering herd), and the releasing task, running first, could take the lock straight back
 * (barging) and starve the rest.
 */
export class TurnQueue {
  /** Present while a key has a head; holds those waiting behind it. */
  readonly #queues = new Map<string, Queued[]>();

  busy(key: string): boolean {
    return this.#queues.has(key);
  }

  /** Resolves when it is the caller's turn; rejects with LockTimeoutError after `wait` ms, or the signal's reason. */
  enter(key: string, wait: number, signal: AbortSignal): Promise<Turn> {
    const queue = this.#queues.get(key);
    if (!queue) {
      this.#queues.set(key, []);
      return Promise.resolve({ queued: false, leave: () => this.#next(key) });
    }
    signal.throwIfAborted();
    return new Promise<Turn>((resolve, reject) => {
      const start = performance.now();
      const entry: Queued = {
        admit: () => {
          settle();
          resolve({ queued: true, leave: () => this.#next(key) });
        },
      };
      const timer =
        wait === Infinity
          ? undefined
          : setTimeout(() => {
              settle();
              const waited = Math.round(performance.now() - start);
              reject(new LockTimeoutError(`"${key}" was still held by another owner after waiting ${waited} ms`, { key, waited }));
            }, wait);
      const onAbort = (): void => {
        settle();
        // The contract: an aborted wait rejects with the signal's reason, whatever the caller chose.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(signal.reason);
      };
      const settle = (): void => {
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const at = queue.indexOf(entry);
        if (at >= 0) queue.splice(at, 1);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      queue.push(entry);
    });
  }

  #next(key: string): void {
    const queue = this.#queues.get(key);
    const head = queue?.shift();
    if (head) head.admit();
    else this.#queues.delete(key);
  }
}
