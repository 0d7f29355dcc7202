// The one interface every backend implements. A backend only grants, extends, releases and inspects
// leases on a key, atomically, and may tell waiters when a key changes. Retries, renewal, reentrancy and
// recipes live once, above it, in the core.

import type { RateStore } from './backends/shared/gcra.js';
import type { PoolStore } from './backends/shared/pools.js';

/** Who goes first on a read-write key when both wait: readers, or a waiting writer. */
export type RwPolicy = 'reader-preference' | 'writer-preference';

export type LeaseMode = 'exclusive' | 'shared';

export interface AcquireRequest {
  key: string;
  owner: string;
  /** Lease length in ms; the backend expires the lease on its own clock. */
  ttl: number;
  mode: LeaseMode;
  /** Shared mode only: at most this many holders (a semaphore). Absent: unlimited (read locks). */
  limit?: number | undefined;
  /** Shared mode only: refuse while an exclusive waiter has announced itself (writer preference). */
  writerPreference?: boolean | undefined;
  /**
   * Exclusive mode only: when refused, record for this many ms that `owner` is waiting, so readers that
   * prefer writers hold back. Cleared by a grant or by `release(key, owner)`.
   */
  intent?: number | undefined;
  /**
   * The caller will keep trying until it gets the lease or gives up (then it calls release): a fair
   * backend may give it a place in line. A one-off try must not leave one behind.
   */
  queue?: boolean | undefined;
  /**
   * Read-write keys only: the policy of this read or write (absent for plain locks and semaphores).
   * A backend whose server queues waiters itself must not queue a reader-preference writer there,
   * since a queued writer would hold new readers back.
   */
  rw?: RwPolicy | undefined;
  /** How long, in all, the caller will wait for this lease (ms; Infinity: until aborted). */
  wait?: number | undefined;
  /**
   * Exclusive waiters only: the caller heads this process's queue of waiters on the key (the others
   * wait behind it here and do not try), so a backend that keeps a line may give it its place at once
   * rather than after a refused first try.
   */
  head?: boolean | undefined;
}

export type AcquireResult =
  | {
      granted: true;
      /** Strictly increasing per key across every grant, even across restarts of the backend. */
      fence: bigint;
      /** How long the lease is known valid, counted from when the request was sent (default: ttl). */
      validity?: number | undefined;
    }
  | {
      granted: false;
      /** ms until the earliest blocking lease or intent expires, when the backend knows it. */
      retryAfter?: number | undefined;
    };

export interface LeaseHolder {
  owner: string;
  fence: bigint;
  /** Epoch ms at which the lease ends unless extended; `Infinity` when it lives with a connection. */
  expiresAt: number;
}

export interface LockInfo {
  key: string;
  mode: LeaseMode;
  holders: LeaseHolder[];
}

export interface BackendCapabilities {
  /** Offers shared leases (read locks, semaphores). */
  shared: boolean;
  /** Implements `waitForChange`, so waiters are woken rather than polling. */
  wake: boolean;
  /**
   * Fences are strictly increasing per key. False means they are only informative: the conformance
   * suite then skips its fence-order tests, and users must not fence a resource with them.
   */
  fencing: boolean;
  /**
   * Where the lease's life is kept: a server-side TTL, or the connection that holds it. With
   * 'connection' the core keeps no local deadline (the lease ends when the backend reports it lost
   * through `onLost`), so `onLost` is required.
   */
  expiry: 'ttl' | 'connection';
  /**
   * Exclusive waiters wait in a line the backend keeps itself, in the order they joined it (etcd's
   * create revisions). The core then lets this process's next waiter join that line as soon as the
   * one before it is granted, instead of when it lets go, so a release hands over at once.
   */
  fifo?: boolean;
}

export interface LockBackend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  /**
   * Grants a lease when the key is free (or compatible), atomically. The same owner asking again for a
   * lease it already holds in the same mode gets it again with the same fence and a refreshed ttl.
   */
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Resets the lease's ttl; false when `owner` holds no lease on `key`. */
  extend(key: string, owner: string, ttl: number): Promise<boolean>;
  /**
   * Ends `owner`'s lease (and any announced intent); false when it held none. `fence`, when given, is
   * the fence the lease was granted: a backend may use it to find the lease in fewer steps, never to
   * decide whose it is (the owner does that).
   */
  release(key: string, owner: string, fence?: bigint): Promise<boolean>;
  /** The live leases on `key`, or null when it is free. */
  inspect(key: string): Promise<LockInfo | null>;
  /**
   * Resolves when `key` may have become free (a release or an expiry). Registering must happen before
   * the returned promise is awaited, so a change between a refused attempt and the wait is not lost.
   * May resolve spuriously; must settle (resolve) once `signal` aborts.
   */
  waitForChange?(key: string, signal: AbortSignal): Promise<void>;
  /**
   * Backends whose leases live with a connection call `listener` when one is lost outside any call
   * (the connection holding it dropped); the core then aborts the lease's signal and emits 'lost'.
   */
  onLost?(listener: (key: string, owner: string, reason: unknown) => void): void;
  /** Rate-limiter buckets (GCRA), atomic on the backend's clock; absent where a rate is not meaningful (Redlock). */
  readonly rate?: RateStore;
  /**
   * Pool membership shared by every process (recipes/pool.ts); absent where one list is not
   * meaningful (Redlock: a quorum of sets), and a pool then keeps its members in-process.
   */
  readonly pools?: PoolStore;
  close(): Promise<void>;
}
