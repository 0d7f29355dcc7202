// This process's exclusive waiters per key, first come first served: only the head of a key's queue
// waits on the backend. Without it every local waiter is woken by each release and all but one lose
// (a thundering herd), and the releasing task, running first, could take the lock straight back
// (barging) and starve the rest.

import { performance } from 'node:perf_hooks';
import type { Deadlines, Expiring } from './deadlines.js';
import { timeout } from './waiting.js';

export interface Turn {
  /** Whether the caller had to wait behind others (the key's state has changed since). */
  queued: boolean;
  /** Hands the turn to the next waiter; call exactly once. */
  leave(): void;
}

interface Queued extends Expiring {
  deadline: number;
  admit(): void;
  fail(reason: unknown): void;
}

export class TurnQueue {
  /** Present while a key has a head; holds those waiting behind it. */
  readonly #queues = new Map<string, Queued[]>();
  readonly #timers: Deadlines<Expiring>;

  constructor(timers: Deadlines<Expiring>) {
    this.#timers = timers;
  }

  busy(key: string): boolean {
    return this.#queues.has(key);
  }

  /**
   * Resolves when it is the caller's turn; rejects with LockTimeoutError after `wait` ms, with the
   * signal's reason when it aborts, or with close()'s reason.
   */
  enter(key: string, wait: number, signal: AbortSignal | undefined): Promise<Turn> {
    const queue = this.#queues.get(key);
    if (!queue) {
      this.#queues.set(key, []);
      return Promise.resolve({ queued: false, leave: () => this.#next(key) });
    }
    signal?.throwIfAborted();
    return new Promise<Turn>((resolve, reject) => {
      const since = performance.now();
      const settle = (): void => {
        this.#timers.unwatch(entry);
        signal?.removeEventListener('abort', onAbort);
        const at = queue.indexOf(entry);
        if (at >= 0) queue.splice(at, 1);
      };
      const entry: Queued = {
        deadline: since + wait,
        deadlineIndex: -1,
        admit: () => {
          settle();
          resolve({ queued: true, leave: () => this.#next(key) });
        },
        fail: (reason) => {
          settle();
          // The contract: an aborted wait rejects with the signal's reason, whatever the caller chose.
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
          reject(reason);
        },
        expire: () => entry.fail(timeout(key, since)),
      };
      const onAbort = (): void => entry.fail(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (wait !== Infinity) this.#timers.watch(entry);
      queue.push(entry);
    });
  }

  /** Rejects every queued waiter with `reason` (the Locksmith is closing). */
  close(reason: unknown): void {
    for (const queue of this.#queues.values()) for (const entry of [...queue]) entry.fail(reason);
  }

  #next(key: string): void {
    const queue = this.#queues.get(key);
    const head = queue?.shift();
    if (head) head.admit();
    else this.#queues.delete(key);
  }
}
