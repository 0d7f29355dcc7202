// The one interface recipes are written against. `Locksmith` implements it; a recipe takes a `Locks`
// and uses nothing else, so a user can write one exactly the way the bundled ones are written (see
// "Writing a recipe" in docs/recipes.md), and adding a recipe touches neither the engine nor the façade.

import type { LockBackend, LockInfo } from '../backend.js';
import type { LockEvent } from '../core/events.js';
import type { Lock } from '../lock.js';
import type { AcquireOptions, RwOptions, TryAcquireOptions } from '../options.js';
import type { AcquireAllOptions, LockGroup } from '../primitives/multi.js';
import type { Semaphore, SemaphoreOptions } from '../primitives/semaphore.js';

/** What one attempt of `waitFor` gives: a value, or a refusal (retry in `retryAfter` ms at the latest). */
export type WaitAttempt<T> = { value: T } | { retryAfter?: number | undefined };

export interface WaitForOptions {
  /** ms (0: one attempt; Infinity: until `signal` aborts; default: the Locksmith's `wait`). */
  wait?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** Anything that counts what it did; its counters appear in `stats()` under a group and a name. */
export interface StatsSource {
  stats(): object;
}

export interface Locks {
  /** The backend, for recipes that keep state of their own in it (a rate limiter's buckets). */
  readonly backend: LockBackend;
  acquire(key: string, options?: AcquireOptions): Promise<Lock>;
  tryAcquire(key: string, options?: TryAcquireOptions): Promise<Lock | null>;
  withLock<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: AcquireOptions): Promise<T>;
  read(key: string, options?: RwOptions): Promise<Lock>;
  write(key: string, options?: RwOptions): Promise<Lock>;
  withRead<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: RwOptions): Promise<T>;
  withWrite<T>(key: string, fn: (lock: Lock) => Promise<T> | T, options?: RwOptions): Promise<T>;
  semaphore(key: string, options: SemaphoreOptions): Semaphore;
  acquireAll(keys: readonly string[], options?: AcquireAllOptions): Promise<LockGroup>;
  inspect(key: string): Promise<LockInfo | null>;
  /**
   * The one wait loop around a recipe's own `attempt` (a pool lending any free member): calls it
   * until it gives `{ value }`, again whenever `key` may have changed (the backend's `waitForChange`
   * on `key`, or `changed(key)` here), when a refusal's `retryAfter` ms pass, or at the safety poll.
   * Rejects with LockTimeoutError after `wait` ms (0: one attempt), or with the signal's reason.
   */
  waitFor<T>(key: string, attempt: () => Promise<WaitAttempt<T>>, options: WaitForOptions): Promise<T>;
  /** Wakes this process's waiters on `key` (acquire and waitFor) at once, as a release sent from here does. */
  changed(key: string): void;
  isLocked(key: string): Promise<boolean>;
  /**
   * Reports an error that has no caller to throw to (a background refresh, a failed release after
   * the caller's own error): to 'error' listeners, else the logger, else process.emitWarning once.
   * Never throws.
   */
  reportError(error: unknown, event?: Partial<LockEvent>): void;
  /**
   * Shows `source.stats()` in `stats()[group][name]` from now on (a later source under the same
   * group and name replaces the earlier one). The bundled recipes use the groups `pools`,
   * `elections` and `stampedes`.
   */
  register(group: string, name: string, source: StatsSource): void;
}
