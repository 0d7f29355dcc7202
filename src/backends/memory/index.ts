// In-process backend: leases in a Map, expiry on the monotonic clock, waiters woken by direct callback.
// It is the reference implementation of the backend contract, and what tests of the layers above use.
// Several Locksmith instances may share one store to act like separate processes.

import { performance } from 'node:perf_hooks';
import type { AcquireRequest, AcquireResult, LockBackend, LockInfo, LeaseMode } from '../../backend.js';
import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { Wakers } from '../shared/wakers.js';
import { MemoryRates } from './rate.js';
import { MemberSets } from '../shared/pools.js';
import { Holders } from './holders.js';

interface Entry {
  mode: LeaseMode;
  holders: Holders;
  /** Writers waiting (owner → deadline), which writer-preferring readers let go first. */
  intents: Map<string, number> | undefined;
}

/** How often abandoned keys (every lease expired, nobody touching them) are swept away. */
const SWEEP_MS = 30_000;

export class MemoryStore {
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Wakers();
  /**
   * One counter for every key is still strictly increasing per key. Seeded from the clock in µs so a
   * fresh store (a restarted process) never hands out a fence below one it gave before.
   */
  #fence = BigInt(Date.now()) * 1000n;
  #sweeper: NodeJS.Timeout | undefined;
  /**
   * Rate-limiter buckets, shared by every backend over this store like its locks. Read through
   * `locks.rateLimiter()`, not directly.
   * @internal
   */
  readonly rates = new MemoryRates();
  /**
   * Pool members, shared likewise; a change wakes the pool key's waiters. Read through
   * `locks.pool()`, not directly.
   * @internal
   */
  readonly pools = new MemberSets((pool) => this.#notify(pool));

  /**
   * The entry for `key` with expired holders and intents dropped. A free entry stays in the map until
   * the sweeper removes it, so a hot key does not allocate a new entry on every acquisition.
   */
  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    const expired = entry.holders.size > 0 && entry.holders.dropExpired(now);
    if (entry.intents) {
      for (const [owner, deadline] of entry.intents) if (deadline <= now) entry.intents.delete(owner);
      if (entry.intents.size === 0) entry.intents = undefined;
    }
    if (expired) this.#notify(key);
    return entry;
  }

  acquire(req: AcquireRequest): AcquireResult {
    const now = performance.now();
    let entry = this.#live(req.key, now);
    const mine = entry?.holders.get(req.owner);
    if (entry && mine) {
      if (entry.mode !== req.mode) return { granted: false };
      mine.deadline = now + req.ttl;
      return { granted: true, fence: mine.fence };
    }
    if (entry && !this.#compatible(entry, req)) {
      if (req.mode === 'exclusive' && req.intent) (entry.intents ??= new Map()).set(req.owner, now + req.intent);
      return { granted: false, retryAfter: this.#retryAfter(entry, now) };
    }
    if (!entry) {
      entry = { mode: req.mode, holders: new Holders(), intents: undefined };
      this.#entries.set(req.key, entry);
      this.#sweep();
    }
    if (entry.holders.size === 0) entry.mode = req.mode;
    if (entry.intents?.delete(req.owner) && entry.intents.size === 0) entry.intents = undefined;
    const fence = ++this.#fence;
    entry.holders.set(req.owner, { fence, deadline: now + req.ttl });
    return { granted: true, fence };
  }

  #compatible(entry: Entry, req: AcquireRequest): boolean {
    const writerWaits = req.writerPreference === true && entry.intents !== undefined;
    if (entry.holders.size === 0) return req.mode === 'exclusive' || !writerWaits;
    if (req.mode === 'exclusive' || entry.mode === 'exclusive') return false;
    if (req.limit !== undefined && entry.holders.size >= req.limit) return false;
    return !writerWaits;
  }

  #retryAfter(entry: Entry, now: number): number {
    let soonest = entry.holders.soonest() - now;
    for (const d of entry.intents?.values() ?? []) soonest = Math.min(soonest, d - now);
    return Math.max(1, Math.ceil(soonest));
  }

  extend(key: string, owner: string, ttl: number): boolean {
    const now = performance.now();
    const holder = this.#live(key, now)?.holders.get(owner);
    if (!holder) return false;
    holder.deadline = now + ttl;
    return true;
  }

  release(key: string, owner: string): boolean {
    const entry = this.#live(key, performance.now());
    if (!entry) return false;
    const withdrew = entry.intents?.delete(owner) ?? false;
    if (entry.intents?.size === 0) entry.intents = undefined;
    const had = entry.holders.delete(owner);
    if (had || withdrew) this.#notify(key);
    return had;
  }

  inspect(key: string): LockInfo | null {
    const now = performance.now();
    const entry = this.#live(key, now);
    if (!entry || entry.holders.size === 0) return null;
    const wall = Date.now();
    return {
      key,
      mode: entry.mode,
      holders: entry.holders.list().map(([owner, h]) => ({ owner, fence: h.fence, expiresAt: Math.floor(wall + (h.deadline - now)) })),
    };
  }

  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return this.#listeners.wait(key, signal);
  }

  #notify(key: string): void {
    this.#listeners.wake(key);
  }

  /** Keeps a store of abandoned keys from growing without bound; the timer never holds the process open. */
  #sweep(): void {
    if (this.#sweeper) return;
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const key of [...this.#entries.keys()]) {
        const entry = this.#live(key, now);
        if (entry && entry.holders.size === 0 && !entry.intents) this.#entries.delete(key);
      }
      if (this.#entries.size === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, SWEEP_MS);
    this.#sweeper.unref();
  }

  /** Keys with entries, live or awaiting the sweeper (for tests and debugging). */
  get size(): number {
    return this.#entries.size;
  }
}

export interface MemoryBackendOptions {
  /** Share one store between several backends (e.g. to simulate processes in tests). */
  store?: MemoryStore;
}

export function memoryBackend(options?: MemoryBackendOptions): LockBackend & { readonly store: MemoryStore } {
  const o = checkOptionNames(options, ['store'], 'memoryBackend()');
  if (o.store !== undefined && !(o.store instanceof MemoryStore)) {
    throw new LockArgumentError('memoryBackend(): store must be a MemoryStore');
  }
  const store = o.store ?? new MemoryStore();
  // Async on purpose: callers get the same promise-shaped contract as from a network backend.
  return {
    name: 'memory',
    capabilities: { shared: true, wake: true, fencing: true, expiry: 'ttl' },
    store,
    acquire: (req) => Promise.resolve(store.acquire(req)),
    extend: (key, owner, ttl) => Promise.resolve(store.extend(key, owner, ttl)),
    release: (key, owner) => Promise.resolve(store.release(key, owner)),
    inspect: (key) => Promise.resolve(store.inspect(key)),
    waitForChange: (key, signal) => store.waitForChange(key, signal),
    rate: {
      take: (request) => Promise.resolve(store.rates.take(request)),
      reset: (key) => Promise.resolve(store.rates.reset(key)),
    },
    pools: store.pools.store(),
    close: () => Promise.resolve(),
  };
}
