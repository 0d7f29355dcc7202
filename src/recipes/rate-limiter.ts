// Distributed rate limiting: a GCRA bucket kept by the backend (see backends/shared/gcra.ts), taken in
// one atomic step on the server's clock, one round trip per take. A refusal is a result, not an error:
// `take()` resolves `{ allowed: false, retryAfter }`. With `wait`, a take sleeps until the bucket has
// the tokens (the backend says when) and tries again; it never polls faster than the refill, and it
// gives up at once, refused, when the wait it was given cannot cover the time to the tokens.

import { performance } from 'node:perf_hooks';
import type { RateDecision, RateStore } from '../backends/shared/gcra.js';
import { LockAcquisitionError, LockArgumentError } from '../errors.js';
import { checkKey, checkOptionNames, checkWait } from '../options.js';
import type { Locks } from './locks.js';

export type { RateDecision } from '../backends/shared/gcra.js';

export interface RateLimiterOptions {
  /** Tokens per interval: the sustained rate. */
  limit: number;
  /** The interval in ms (e.g. 60_000 for a limit per minute). */
  interval: number;
  /** Tokens a full bucket holds, taken at once by a burst (default: `limit`). */
  burst?: number;
}

export interface TakeOptions {
  /** Tokens this take needs (default 1, at most `burst`). */
  cost?: number;
  /** How long to wait for the tokens, ms (default 0: decide now; Infinity: until `signal` aborts). */
  wait?: number;
  signal?: AbortSignal;
}

export interface RateLimiterStats {
  allowed: number;
  refused: number;
  waited: number;
}

/** The largest count we take: well inside every backend's exact integer range. */
const MAX_COUNT = 1_000_000_000;

function checkCount(value: unknown, name: string, key: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_COUNT) {
    throw new LockArgumentError(`rateLimiter(): ${name} must be a positive integer up to ${MAX_COUNT}, got ${String(value)}`, { key });
  }
  return value;
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    // Not unref'd: a caller awaiting its turn is foreground work.
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class RateLimiter {
  readonly name: string;
  readonly limit: number;
  readonly interval: number;
  readonly burst: number;
  readonly #store: RateStore;
  readonly #backend: string;
  readonly #stats: RateLimiterStats = { allowed: 0, refused: 0, waited: 0 };

  constructor(locks: Locks, name: string, options: RateLimiterOptions) {
    const backend = locks.backend;
    this.name = checkKey(name, 'rate limiter name');
    const o = checkOptionNames(options, ['limit', 'interval', 'burst'], 'rateLimiter()');
    this.limit = checkCount(o.limit, 'limit', name);
    this.interval = checkCount(o.interval, 'interval', name);
    this.burst = o.burst === undefined ? this.limit : checkCount(o.burst, 'burst', name);
    if (!backend.rate) {
      throw new LockArgumentError(
        `rateLimiter(): the ${backend.name} backend keeps no rate buckets${backend.name === 'redlock' ? ' (a quorum of counters does not make one rate)' : ''}; use Redis, PostgreSQL, etcd, file or memory`,
        { key: name },
      );
    }
    this.#store = backend.rate;
    this.#backend = backend.name;
    locks.register('rateLimiters', this.name, this);
  }

  /** Takes `cost` tokens if the bucket has them (waiting up to `wait` for them); never throws for a refusal. */
  async take(options?: TakeOptions): Promise<RateDecision> {
    // The common take asks for one token now: nothing to check, and nothing to wait for.
    if (options === undefined) return this.#counted(await this.#take(1, false));
    const o = checkOptionNames(options, ['cost', 'wait', 'signal'], 'take()');
    const cost = this.#cost(o.cost);
    const wait = o.wait === undefined ? 0 : checkWait(o.wait, this.name);
    const signal = o.signal as AbortSignal | undefined;
    if (signal !== undefined && !(signal instanceof AbortSignal))
      throw new LockArgumentError('take(): signal must be an AbortSignal', { key: this.name });
    signal?.throwIfAborted();
    const deadline = performance.now() + wait;
    let decision = await this.#take(cost, false);
    while (!decision.allowed && decision.retryAfter <= deadline - performance.now()) {
      this.#stats.waited += 1;
      await pause(decision.retryAfter, signal);
      decision = await this.#take(cost, false);
    }
    return this.#counted(decision);
  }

  #counted(decision: RateDecision): RateDecision {
    if (decision.allowed) this.#stats.allowed += 1;
    else this.#stats.refused += 1;
    return decision;
  }

  /** What a take of `cost` would get now, consuming nothing. */
  async peek(options?: { cost?: number }): Promise<RateDecision> {
    const o = checkOptionNames(options, ['cost'], 'peek()');
    return this.#take(this.#cost(o.cost), true);
  }

  /** Fills the bucket again. */
  async reset(): Promise<void> {
    await this.#store.reset(this.name).catch((error: unknown) => this.#failed(error));
  }

  stats(): RateLimiterStats {
    return { ...this.#stats };
  }

  #cost(value: unknown): number {
    const cost = value === undefined ? 1 : checkCount(value, 'cost', this.name);
    if (cost > this.burst)
      throw new LockArgumentError(`rateLimiter(): cost ${cost} is more than the burst ${this.burst}: it could never be allowed`, {
        key: this.name,
      });
    return cost;
  }

  async #take(cost: number, peek: boolean): Promise<RateDecision> {
    // try/await, not .catch(): one promise fewer on every take.
    try {
      return await this.#store.take({ key: this.name, limit: this.limit, interval: this.interval, burst: this.burst, cost, peek });
    } catch (error) {
      this.#failed(error);
    }
  }

  #failed(error: unknown): never {
    throw new LockAcquisitionError(`rate limiter "${this.name}": the ${this.#backend} backend failed`, { key: this.name, cause: error });
  }
}
