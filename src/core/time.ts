// Promise helpers for time, shared by the core and the backends.

import { performance } from 'node:perf_hooks';
import { Deadlines, type Expiring } from './deadlines.js';

/**
 * A pause inside work a caller awaits. Not unref'd, on purpose: an unref'd pause that is the only
 * thing pending would let the process exit in the middle of an acquire (a CLI's lock, say).
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `pending`, or nothing once `ms` have passed; the bound alone keeps nothing alive (never rejects: for best-effort waits). */
export function settleWithin(pending: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  return Promise.race([
    pending.then(
      () => undefined,
      () => undefined,
    ),
    bound,
  ]).finally(() => clearTimeout(timer));
}

/** The bounds of every withTimeout() in flight: one timer for all (unref'd), not one per call. */
const bounds = new Deadlines<Expiring>();

/**
 * `pending`, or a rejection with `expired()` after `ms` (the bound alone keeps nothing alive: `pending`
 * does, if it is real I/O). A result that arrives too late goes to `late`
 * (e.g. a lock granted after its caller gave up, which must be handed back); a late failure is dropped.
 */
export function withTimeout<T>(pending: Promise<T>, ms: number, expired: () => Error, late?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let over = false;
    const bound: Expiring = {
      deadline: performance.now() + ms,
      deadlineIndex: -1,
      expire: () => {
        over = true;
        reject(expired());
      },
    };
    bounds.watch(bound);
    pending.then(
      (value) => {
        bounds.unwatch(bound);
        if (over) late?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        bounds.unwatch(bound);
        if (!over) reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
