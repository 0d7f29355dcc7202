// A pool member on loan: the member's own lock (fence, ttl, signal), and the pool told when it comes
// back, so that waiters for a free member are woken.

import type { Lock } from '../lock.js';

/** The lease options a pool passes on to its member's lock. */
export interface LeaseOptions {
  ttl?: number;
  autoRenew?: boolean;
}

export class PoolLease implements AsyncDisposable {
  readonly member: string;
  readonly lock: Lock;
  readonly #returned: () => Promise<void>;

  constructor(member: string, lock: Lock, returned: () => Promise<void>) {
    this.member = member;
    this.lock = lock;
    this.#returned = returned;
  }

  get fence(): bigint {
    return this.lock.fence;
  }
  get signal(): AbortSignal {
    return this.lock.signal;
  }
  get expiresAt(): number {
    return this.lock.expiresAt;
  }
  get held(): boolean {
    return this.lock.held;
  }

  async extend(ttl?: number): Promise<void> {
    await this.lock.extend(ttl);
  }

  /** Gives the member back (a member removed from the pool meanwhile is then gone). */
  async release(): Promise<void> {
    try {
      await this.lock.release();
    } finally {
      await this.#returned();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.lock[Symbol.asyncDispose]();
    } finally {
      await this.#returned();
    }
  }
}
