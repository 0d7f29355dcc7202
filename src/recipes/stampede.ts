// A cache-stampede guard. When a value is missing or stale, exactly one caller across all processes
// runs the fetcher (it holds the key's lock); the others wait on the same lock, which wakes them when
// it is released, and then find the fresh value in the store. In one process, concurrent callers for
// the same key also share one pending fetch, so a hundred callers cost one lock acquisition.
//
//   age < freshFor                      fresh: returned from the store
//   freshFor <= age < freshFor+staleFor stale: returnStale gets it at once and refreshes in the
//                                       background (stale-while-revalidate); otherwise the caller
//                                       waits for the single refresh
//   missing (or older)                  single flight; staleOnError falls back to a stale value if
//                                       the fetch fails

import { LockArgumentError } from '../errors.js';
import { keyOf, type AsyncMethod, type KeyFn } from './decorators.js';
import type { Locks } from './locks.js';
import { MAX_TTL, checkFunction, checkKey, checkOptionNames, checkTtl, checkWait } from '../options.js';
import { msOption } from '../backends/shared/checks.js';

export interface CacheEntry {
  value: unknown;
  /** Epoch ms at which the value was fetched. */
  storedAt: number;
}

/** Where values live. Shared across processes (e.g. Redis) for the guard to work across them. */
export interface CacheStore {
  get(key: string): Promise<CacheEntry | undefined>;
  /** Keeps `entry` for at least `ttl` ms. */
  set(key: string, entry: CacheEntry, ttl: number): Promise<void>;
}

/** An in-process store: enough for one process, or for tests. */
export function memoryCacheStore(): CacheStore {
  const entries = new Map<string, { entry: CacheEntry; until: number }>();
  return {
    get(key) {
      const hit = entries.get(key);
      if (hit && hit.until <= Date.now()) entries.delete(key);
      return Promise.resolve(hit && hit.until > Date.now() ? hit.entry : undefined);
    },
    set(key, entry, ttl) {
      entries.set(key, { entry, until: Date.now() + ttl });
      return Promise.resolve();
    },
  };
}

export interface StampedeOptions {
  /** How long a value is fresh, ms. */
  freshFor: number;
  /** How long after that a stale value may still be served, ms (default 0). */
  staleFor?: number;
  store?: CacheStore;
  /** Names this guard in stats() (default "default"). */
  name?: string;
}

export interface GetOptions {
  /** How long to wait for another caller's fetch, ms (default: the Locksmith's wait). */
  wait?: number;
  /** Serve a stale value at once and refresh it in the background. */
  returnStale?: boolean;
  /** If the fetch fails and a stale value exists, return it instead of the error. */
  staleOnError?: boolean;
  /** Lease of the fetch lock, ms; renewed while the fetcher runs. */
  ttl?: number;
}

export interface StampedeStats {
  hits: number;
  staleHits: number;
  misses: number;
  fetches: number;
  fetchErrors: number;
  /** Callers served by somebody else's fetch. */
  shared: number;
}

export class StampedeGuard {
  readonly name: string;
  readonly freshFor: number;
  readonly staleFor: number;
  readonly #store: CacheStore;
  readonly #locks: Locks;
  readonly #inflight = new Map<string, Promise<unknown>>();
  readonly #stats: StampedeStats = { hits: 0, staleHits: 0, misses: 0, fetches: 0, fetchErrors: 0, shared: 0 };

  constructor(locks: Locks, options: StampedeOptions) {
    this.#locks = locks;
    const o = checkOptionNames(options, ['freshFor', 'staleFor', 'store', 'name'], 'stampede()');
    // freshFor is required: absent, it fails the check like any other bad value.
    this.freshFor = msOption('stampede()', 'freshFor', o.freshFor, NaN, 1, MAX_TTL);
    this.staleFor = msOption('stampede()', 'staleFor', o.staleFor, 0, 0, MAX_TTL);
    this.#store = o.store === undefined ? memoryCacheStore() : checkStore(o.store);
    if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0))
      throw new LockArgumentError('stampede(): name must be a non-empty string');
    this.name = o.name ?? 'default';
    locks.register('stampedes', this.name, this);
  }

  stats(): StampedeStats {
    return { ...this.#stats };
  }

  async get<T>(key: string, fetcher: () => Promise<T> | T, options?: GetOptions): Promise<T> {
    checkKey(key);
    checkKey(this.#lockKey(key), 'stampede lock key');
    checkFunction(fetcher, 'fetcher', key);
    const o = checkOptionNames(options, ['wait', 'returnStale', 'staleOnError', 'ttl'], 'stampede.get()');
    const wait = o.wait === undefined ? undefined : checkWait(o.wait, key);
    const ttl = o.ttl === undefined ? undefined : checkTtl(o.ttl, key);
    for (const flag of ['returnStale', 'staleOnError'] as const) {
      if (o[flag] !== undefined && typeof o[flag] !== 'boolean') throw new LockArgumentError(`${flag} must be a boolean`, { key });
    }

    const entry = await this.#store.get(key);
    const age = entry ? Date.now() - entry.storedAt : Infinity;
    if (entry && age < this.freshFor) {
      this.#stats.hits += 1;
      return entry.value as T;
    }
    const stale = entry && age < this.freshFor + this.staleFor ? entry : undefined;
    if (stale && o.returnStale === true) {
      this.#stats.staleHits += 1;
      // Background refresh: only if nobody else is refreshing (tryAcquire), errors only reported.
      void this.#flight(key, fetcher, { wait: 0, ttl }).catch((error: unknown) => {
        if (!isBusy(error)) this.#locks.reportError(error, { key });
      });
      return stale.value as T;
    }
    this.#stats.misses += 1;
    try {
      return (await this.#flight(key, fetcher, { wait, ttl })) as T;
    } catch (error) {
      if (stale && o.staleOnError === true) {
        this.#stats.staleHits += 1;
        return stale.value as T;
      }
      throw error;
    }
  }

  /** A method decorator: `@guard.cached((symbol) => \`quote:${symbol}\`)` caches the method's result. */
  cached<K extends unknown[]>(key: KeyFn<K>, options?: GetOptions) {
    checkFunction(key, 'cached(): key');
    return <This, A extends [...K, ...unknown[]], R>(
      method: AsyncMethod<This, A, R>,
      _context: ClassMethodDecoratorContext<This, AsyncMethod<This, A, R>>,
    ) => {
      const call = (self: This, args: A): Promise<R> => this.get(keyOf(key, args), () => method.apply(self, args), options);
      return function (this: This, ...args: A): Promise<R> {
        return call(this, args);
      };
    };
  }

  #lockKey(key: string): string {
    return `stampede:${key}`;
  }

  /** One fetch per key in this process; across processes, the key's lock decides who fetches. */
  #flight(key: string, fetcher: () => unknown, opts: { wait: number | undefined; ttl: number | undefined }): Promise<unknown> {
    const pending = this.#inflight.get(key);
    if (pending) {
      this.#stats.shared += 1;
      return pending;
    }
    const flight = this.#locks
      .withLock(
        this.#lockKey(key),
        async () => {
          // Whoever held the lock before us may have just stored a fresh value.
          const entry = await this.#store.get(key);
          if (entry && Date.now() - entry.storedAt < this.freshFor) {
            this.#stats.shared += 1;
            return entry.value;
          }
          this.#stats.fetches += 1;
          let value: unknown;
          try {
            value = await fetcher();
          } catch (error) {
            this.#stats.fetchErrors += 1;
            throw error; // nothing stored: a failure must not poison the cache
          }
          await this.#store.set(key, { value, storedAt: Date.now() }, this.freshFor + this.staleFor);
          return value;
        },
        { ...(opts.wait !== undefined ? { wait: opts.wait } : {}), ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}) },
      )
      .finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, flight);
    return flight;
  }
}

function checkStore(store: unknown): CacheStore {
  const s = store as Partial<CacheStore> | null;
  if (!s || typeof s !== 'object' || typeof s.get !== 'function' || typeof s.set !== 'function') {
    throw new LockArgumentError('stampede(): store must have get(key) and set(key, entry, ttl)');
  }
  return s as CacheStore;
}

function isBusy(error: unknown): boolean {
  return error instanceof Error && (error as { code?: string }).code === 'ERR_LOCK_TIMEOUT';
}
