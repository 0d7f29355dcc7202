// acquireAll takes several locks as one. Keys are taken in one global order (sorted by code unit), so
// two callers asking for overlapping sets can never hold one each and wait for the other's. On any
// failure everything taken so far is released, newest first, before the error is thrown.

import { performance } from 'node:perf_hooks';
import { LockArgumentError, LockReleaseError } from '../errors.js';
import type { Lock } from '../lock.js';
import type { Engine } from '../core/engine.js';
import { OPTION_NAMES, checkKey, resolveAcquire } from '../options.js';
import { newOwner } from '../core/reentrancy.js';

export interface AcquireAllOptions {
  ttl?: number;
  /** Shared by all keys: the whole group must be taken within this many ms. */
  wait?: number;
  signal?: AbortSignal;
  autoRenew?: boolean;
  owner?: string;
}

const MAX_KEYS = 1000;

export class LockGroup implements AsyncDisposable {
  /** The locks, in the order they were taken (sorted by key). */
  readonly locks: readonly Lock[];
  /** Aborts when any lock of the group is lost. */
  readonly signal: AbortSignal;

  constructor(locks: Lock[]) {
    this.locks = locks;
    this.signal = AbortSignal.any(locks.map((l) => l.signal));
  }

  get keys(): string[] {
    return this.locks.map((l) => l.key);
  }

  /** The lock on `key`, for its fence. */
  get(key: string): Lock | undefined {
    return this.locks.find((l) => l.key === key);
  }

  async extend(ttl?: number): Promise<void> {
    await Promise.all(this.locks.map((l) => l.extend(ttl)));
  }

  /** Releases every lock; if any release fails the rest still run, then one LockReleaseError says which. */
  async release(): Promise<void> {
    const results = await Promise.allSettled([...this.locks].reverse().map((l) => l.release()));
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failed.length === 1) throw failed[0];
    if (failed.length > 1) {
      throw new LockReleaseError(`${failed.length} of ${this.locks.length} locks could not be released`, {
        cause: new AggregateError(failed),
      });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.locks.map((l) => l[Symbol.asyncDispose]()));
  }
}

export async function acquireAll(engine: Engine, keys: readonly string[], options?: AcquireAllOptions): Promise<LockGroup> {
  const list: unknown = keys;
  if (!Array.isArray(list) || list.length === 0) throw new LockArgumentError('acquireAll(): keys must be a non-empty array of strings');
  if (list.length > MAX_KEYS) throw new LockArgumentError(`acquireAll(): at most ${MAX_KEYS} keys`);
  const sorted = [...new Set(list.map((key: unknown) => checkKey(key)))].sort();
  const opts = resolveAcquire(sorted[0]!, options, OPTION_NAMES.acquireAll, 'acquireAll()', engine.defaults);
  opts.owner ??= newOwner();
  const deadline = opts.wait === Infinity ? Infinity : performance.now() + opts.wait;
  const taken: Lock[] = [];
  try {
    for (const key of sorted) {
      const wait = deadline === Infinity ? Infinity : Math.max(0, Math.round(deadline - performance.now()));
      taken.push(await engine.lease({ key, mode: 'exclusive', options: { ...opts, wait } }));
    }
  } catch (error) {
    for (const lock of taken.reverse()) {
      await lock.release().catch((e: unknown) => engine.report(e, { key: lock.key, owner: lock.owner }, 'release'));
    }
    throw error;
  }
  return new LockGroup(taken);
}
