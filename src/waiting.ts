// The one wait loop. Each round: start listening for a change on the key, then try; when refused,
// sleep until woken, until the blocking lease expires, or until a backoff delay passes, whichever
// comes first. Listening before trying closes the window in which a release could go unnoticed.

import type { Backoff } from './options.js';
import { LockTimeoutError } from './errors.js';

export type Refusal = { retryAfter?: number | undefined };
export type Attempt<T> = () => Promise<{ value: T } | Refusal>;

export interface WaitPlan {
  key: string;
  /** ms; 0 tries once, Infinity waits until `signal` aborts. */
  wait: number;
  signal: AbortSignal | undefined;
  backoff: Backoff;
  /** The backend's wake-up, when it has one. */
  wake?: ((key: string, signal: AbortSignal) => Promise<void>) | undefined;
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

/** Resolves after `ms`, or when `signal` aborts (the caller checks which). Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    // Not unref'd: a caller awaiting a lock is foreground work, and must keep the process alive.
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}


/** Reason for ending a round's wake-up subscription: preallocated, as abort() without one builds a DOMException. */
const ROUND_OVER = Object.freeze({ reason: 'wait round over' });

/** Waits after the refusal `first` (the caller made the uncontended attempt itself). */
export async function waitLoop<T>(plan: WaitPlan, first: Refusal, attempt: Attempt<T>): Promise<WaitResult<T>> {
  const { signal, key } = plan;
  if (plan.wait === 0) throw new LockTimeoutError(`"${key}" is held by another owner`, { key, waited: 0 });
  signal?.throwIfAborted();
  const start = performance.now();
  let refused = first;
  for (let n = 1; ; n++) {
    const round = new AbortController();
    const onAbort = (): void => round.abort(ROUND_OVER);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // With a wake-up: subscribe, then try at once, so a release since the last refusal is seen by
      // this attempt and one after it wakes us. Without: try after each sleep. A failed wake-up only
      // costs the fast path.
      const woken = plan.wake ? plan.wake(key, round.signal).catch(() => undefined) : undefined;
      if (woken || n > 1) {
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
      let delay = woken ? plan.backoff.max : backoffDelay(plan.backoff, n - 1);
      if (refused.retryAfter !== undefined) delay = Math.min(delay, Math.max(refused.retryAfter, 1));
      delay = Math.min(delay, remaining);
      await (woken ? Promise.race([woken, sleep(delay, round.signal)]) : sleep(delay, round.signal));
      signal?.throwIfAborted();
    } finally {
      signal?.removeEventListener('abort', onAbort);
      round.abort(ROUND_OVER);
    }
  }
}
