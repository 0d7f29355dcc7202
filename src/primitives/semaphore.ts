// A counting semaphore is a shared lease with a holder limit: each permit is its own lease with its
// own owner, fence and ttl, so a crashed permit holder frees its slot when its lease expires.

import type { Lock } from '../lock.js';
import type { Locksmith } from '../locksmith.js';
import { nullOnTimeout } from '../locksmith.js';
import { OPTION_NAMES, checkKey, resolveAcquire } from '../options.js';

export interface SemaphoreOptions {
  /** How many permits may be held at once. */
  limit: number;
}

export interface PermitOptions {
  ttl?: number;
  wait?: number;
  signal?: AbortSignal;
  autoRenew?: boolean;
  owner?: string;
}

export type TryPermitOptions = Omit<PermitOptions, 'wait' | 'signal'>;

export class Semaphore {
  readonly key: string;
  readonly limit: number;
  readonly #locks: Locksmith;

  constructor(locks: Locksmith, key: string, limit: number) {
    this.#locks = locks;
    this.key = checkKey(key);
    this.limit = limit;
  }

  /** Waits up to `wait` ms for a permit. */
  acquire(options?: PermitOptions): Promise<Lock> {
    return this.#permit('acquire', options, OPTION_NAMES.permit, false);
  }

  /** A permit if one is free right now, else null. */
  tryAcquire(options?: TryPermitOptions): Promise<Lock | null> {
    return nullOnTimeout(this.#permit('tryAcquire', options, OPTION_NAMES.tryPermit, false, 0));
  }

  /** Runs `fn` holding a permit (auto-renewed), then releases it; `fn`'s error always wins. */
  withPermit<T>(fn: (permit: Lock) => Promise<T> | T, options?: PermitOptions): Promise<T> {
    return this.#locks.scoped(() => this.#permit('withPermit', options, OPTION_NAMES.permit, true), fn, this.key);
  }

  /** How many permits are held now. */
  async held(): Promise<number> {
    const info = await this.#locks.inspect(this.key);
    return info?.holders.length ?? 0;
  }

  async #permit(where: string, options: unknown, allowed: readonly string[], scoped: boolean, wait?: number): Promise<Lock> {
    const o = resolveAcquire(this.key, options, allowed, `semaphore.${where}()`, this.#locks.defaults, scoped || this.#locks.defaults.autoRenew);
    if (wait !== undefined) o.wait = wait;
    return await this.#locks.lease({ key: this.key, mode: 'shared', options: o, limit: this.limit });
  }
}
