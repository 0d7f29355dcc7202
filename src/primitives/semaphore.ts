// A counting semaphore is a shared lease with a holder limit: each permit is its own lease with its
// own owner, fence and ttl, so a crashed permit holder frees its slot when its lease expires.

import type { CallShape, Engine } from '../core/engine.js';
import type { Lock } from '../lock.js';
import { OPTION_NAMES, checkKey } from '../options.js';
import { nullOnTimeout } from './outcomes.js';

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

const PERMIT: CallShape = { name: 'semaphore.acquire()', allowed: OPTION_NAMES.permit, scoped: false };
const TRY_PERMIT: CallShape = { name: 'semaphore.tryAcquire()', allowed: OPTION_NAMES.tryPermit, scoped: false, wait: 0 };
const WITH_PERMIT: CallShape = { name: 'semaphore.withPermit()', allowed: OPTION_NAMES.permit, scoped: true };

export class Semaphore {
  readonly key: string;
  readonly limit: number;
  readonly #engine: Engine;
  readonly #shape: { mode: 'shared'; limit: number };

  /**
   * Made by `locks.semaphore()`; hidden from the API reference as `Lock`'s constructor is.
   * @hidden
   */
  constructor(engine: Engine, key: string, limit: number) {
    this.#engine = engine;
    this.key = checkKey(key);
    this.limit = limit;
    this.#shape = { mode: 'shared', limit };
  }

  /** Waits up to `wait` ms for a permit. */
  acquire(options?: PermitOptions): Promise<Lock> {
    return this.#engine.take(PERMIT, this.key, options, this.#shape);
  }

  /** A permit if one is free right now, else null. */
  tryAcquire(options?: TryPermitOptions): Promise<Lock | null> {
    return nullOnTimeout(this.#engine.take(TRY_PERMIT, this.key, options, this.#shape));
  }

  /** Runs `fn` holding a permit (auto-renewed), then releases it; `fn`'s error always wins. */
  withPermit<T>(fn: (permit: Lock) => Promise<T> | T, options?: PermitOptions): Promise<T> {
    return this.#engine.scoped(() => this.#engine.take(WITH_PERMIT, this.key, options, this.#shape), fn, this.key);
  }

  /** How many permits are held now. */
  async held(): Promise<number> {
    const info = await this.#engine.backend.inspect(this.key);
    return info?.holders.length ?? 0;
  }
}
