// The one wait loop. Each round: listen for a change on the key, then try; when refused, sleep until
// woken, until the blocking lease expires, or until a backoff delay passes, whichever comes first.
// Listening before trying closes the window in which a release could go unnoticed.
//
// A round costs one promise: its resolver is registered with the key's listeners (this process's
// releases and the backend's wake-up, src/core/obtain.ts) and with the Locksmith's one wait timer
// (Deadlines), not a timer, an AbortController and a subscription of its own. Those cost most of an
// in-process handoff (measured, bench/memory.ts).

import { performance } from 'node:perf_hooks';
import type { Backoff } from '../options.js';
import { LockTimeoutError } from '../errors.js';
import type { Deadlines, Expiring } from './deadlines.js';

export type Refusal = { retryAfter?: number | undefined };
export type Attempt<T> = () => Promise<{ value: T } | Refusal>;

/** What the loop needs to know of the key's listeners. */
export interface Listeners {
  /** Calls `wake` on the next change of `key` heard (or spuriously); the returned function withdraws it. */
  listen(key: string, wake: () => void): () => void;
  /** The backend wakes waiters on `key` (else the loop polls with backoff). */
  wakes(key: string): boolean;
}

export interface WaitPlan {
  key: string;
  /** ms; 0 tries once, Infinity waits until aborted. */
  wait: number;
  /** The caller's signal (with the Locksmith's closing in it), if the caller gave one. */
  signal: AbortSignal | undefined;
  /** The Locksmith's closing signal: closing wakes every listener, so no listener is added to it. */
  closing: AbortSignal;
  backoff: Backoff;
  /** When the wait began (performance.now()); `wait` counts from then. */
  since: number;
  listeners: Listeners;
  timers: Deadlines<Expiring>;
}

export interface WaitResult<T> {
  value: T;
  /** ms spent waiting. */
  waited: number;
}

/** Full jitter (AWS architecture blog): uniform in [0, min(max, initial * 2^n)]. */
export function backoffDelay(backoff: Backoff, attempt: number): number {
  const cap = Math.min(backoff.max, backoff.initial * 2 ** Math.min(attempt, 30));
  return Math.random() * cap;
}

export function timeout(key: string, since: number): LockTimeoutError {
  const waited = Math.round(performance.now() - since);
  return new LockTimeoutError(`"${key}" was still held by another owner after waiting ${waited} ms`, { key, waited });
}

/** Waits after the refusal `first` (the caller made the uncontended attempt itself). */
export async function waitLoop<T>(plan: WaitPlan, first: Refusal, attempt: Attempt<T>): Promise<WaitResult<T>> {
  const { signal, key, closing, listeners, timers } = plan;
  if (plan.wait === 0) throw new LockTimeoutError(`"${key}" is held by another owner`, { key, waited: 0 });
  signal?.throwIfAborted();
  closing.throwIfAborted();
  let refused = first;
  // The round in progress ends when woken by a change, by its timer, or by an abort.
  let resolveRound: () => void = () => undefined;
  const wakeUp = (): void => resolveRound();
  const round: Expiring & { deadline: number } = { deadline: 0, deadlineIndex: -1, expire: wakeUp };
  signal?.addEventListener('abort', wakeUp, { once: true });
  try {
    for (let n = 1; ; n++) {
      const woken = new Promise<void>((resolve) => (resolveRound = resolve));
      const wakes = listeners.wakes(key);
      // Also without a backend wake-up: this process's releases and its closing still wake the round.
      const unlisten = listeners.listen(key, wakeUp);
      try {
        // With a wake-up, every round tries (listening first, so a release since the last refusal is
        // seen by this attempt and one after it wakes us); without, every round after a sleep.
        if (wakes || n > 1) {
          const again = await attempt();
          if ('value' in again) return { value: again.value, waited: performance.now() - plan.since };
          refused = again;
        }
        const remaining = plan.wait - (performance.now() - plan.since);
        if (remaining <= 0) throw timeout(key, plan.since);
        // Woken waiters still poll slowly in case a notification is lost; pollers back off with jitter.
        let delay = wakes ? plan.backoff.max : backoffDelay(plan.backoff, n - 1);
        if (refused.retryAfter !== undefined) delay = Math.min(delay, Math.max(refused.retryAfter, 1));
        round.deadline = performance.now() + Math.min(delay, remaining);
        timers.watch(round);
        await woken;
      } finally {
        unlisten();
        timers.unwatch(round);
      }
      signal?.throwIfAborted();
      closing.throwIfAborted();
    }
  } finally {
    signal?.removeEventListener('abort', wakeUp);
  }
}
