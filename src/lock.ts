// A Lock is the caller's handle on a lease. Reentrant acquires share one lease through several handles,
// and the backend lease is released when the last handle is.

import { performance } from 'node:perf_hooks';
import type { LeaseMode } from './backend.js';
import { LockExpiredError, LockReleaseError } from './errors.js';
import { checkTtl } from './options.js';
import type { Lease } from './core/lease.js';

/** The caller's handle on a held lock. */
export class Lock implements AsyncDisposable {
  readonly #lease: Lease;
  readonly #onDisposeError: (error: unknown) => void;
  #released = false;

  /**
   * Made by `Locksmith` for each grant; users never construct one. Hidden from the API reference
   * rather than stripped from the .d.ts (which would leave a public no-argument constructor).
   * @hidden
   */
  constructor(lease: Lease, onDisposeError: (error: unknown) => void) {
    this.#lease = lease;
    this.#onDisposeError = onDisposeError;
  }

  get key(): string {
    return this.#lease.key;
  }
  get owner(): string {
    return this.#lease.owner;
  }
  get mode(): LeaseMode {
    return this.#lease.mode;
  }
  /** Fencing token: strictly increasing per key across all holders. Pass it to the resource you protect. */
  get fence(): bigint {
    return this.#lease.fence;
  }
  /** Epoch ms at which the lease ends unless extended. */
  get expiresAt(): number {
    return this.#lease.expiresAt;
  }
  /** Aborts, with a LockExpiredError, when the lease is lost. */
  get signal(): AbortSignal {
    return this.#lease.signal;
  }
  /** True while this handle holds the lease and its deadline has not passed. */
  get held(): boolean {
    return !this.#released && this.#lease.state === 'held' && performance.now() < this.#lease.deadline;
  }

  /** Resets the lease to `ttl` ms (default: the ttl it was acquired with). */
  async extend(ttl?: number): Promise<void> {
    const next = ttl === undefined ? this.#lease.ttl : checkTtl(ttl, this.key);
    if (this.#released) throw new LockExpiredError(`"${this.key}": cannot extend: this handle was already released`, { key: this.key });
    await this.#lease.extend(next);
  }

  /** Releases this hold; the backend lease goes when the last reentrant hold does. */
  release(): Promise<void> {
    if (this.#released) return Promise.reject(new LockReleaseError(`"${this.key}" was already released by this handle`, { key: this.key }));
    this.#released = true;
    const lease = this.#lease;
    lease.holds -= 1;
    if (lease.holds > 0) {
      if (lease.state !== 'lost') return Promise.resolve();
      return Promise.reject(new LockReleaseError(`"${this.key}" was lost before release`, { key: this.key, cause: lease.lostReason }));
    }
    return lease.release();
  }

  /**
   * `await using` cannot tell whether its block threw, so disposal never throws (it would replace the
   * block's own error with a SuppressedError). A failed release is reported through the 'error' event;
   * use withLock() or an explicit release() to have it thrown.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#released) return;
    try {
      await this.release();
    } catch (error) {
      this.#onDisposeError(error);
    }
  }
}
