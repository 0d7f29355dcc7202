// The one wait loop. Each round: start listening for a change on the key, then try; when refused,
// sleep until woken, until the blocking lease expires, or until a backoff delay passes, whichever
// comes first. Listening before trying closes the window in which a release could go unnoticed.

import type { Backoff } from './options.js';
import { LockTimeoutError } from './errors.js';

export type Attempt<T> = () => Promise<{ value: T } | { retryAfter?: number | undefined }>;

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
    const timer = setTimeout(done, ms);
    timer.unref();
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

export async function waitLoop<T>(plan: WaitPlan, attempt: Attempt<T>): Promise<WaitResult<T>> {
  const { signal } = plan;
  signal?.throwIfAborted();
  const start = performance.now();
  for (let n = 0; ; n++) {
    const round = plan.wake && plan.wait > 0 ? new AbortController() : undefined;
    // A wake-up that fails only costs us the fast path: the timer below still bounds the sleep.
    const woken = round && plan.wake ? plan.wake(plan.key, round.signal).catch(() => undefined) : undefined;
    try {
      const outcome = await attempt();
      if ('value' in outcome) return { value: outcome.value, waited: performance.now() - start, attempts: n + 1 };
      const remaining = plan.wait - (performance.now() - start);
      if (remaining <= 0) {
        const waited = Math.round(performance.now() - start);
        throw new LockTimeoutError(
          plan.wait === 0
            ? `"${plan.key}" is held by another owner`
            : `"${plan.key}" was still held by another owner after waiting ${waited} ms`,
          { key: plan.key, waited },
        );
      }
      // Woken waiters still poll slowly in case a notification is lost; pollers back off with jitter.
      let delay = woken ? plan.backoff.max : backoffDelay(plan.backoff, n);
      if (outcome.retryAfter !== undefined) delay = Math.min(delay, Math.max(outcome.retryAfter, 1));
      delay = Math.min(delay, remaining);
      const stop = round ?? new AbortController();
      const onAbort = (): void => stop.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await (woken ? Promise.race([woken, sleep(delay, stop.signal)]) : sleep(delay, stop.signal));
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      signal?.throwIfAborted();
    } finally {
      round?.abort();
    }
  }
}
