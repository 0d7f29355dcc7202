// Read-write locks: any number of readers (shared leases) or one writer (an exclusive lease). A
// waiting writer announces itself, so writer-preferring readers hold back; the policy is an option.

import type { CallShape, Engine } from '../core/engine.js';
import type { Lock } from '../lock.js';
import { OPTION_NAMES } from '../options.js';

/** One side of a read-write lock: the lease it takes and how its two calls are named. */
export interface RwSide {
  readonly mode: 'shared' | 'exclusive';
  readonly writer: boolean;
  readonly take: CallShape;
  readonly scope: CallShape;
}

export const READ: RwSide = {
  mode: 'shared',
  writer: false,
  take: { name: 'read()', allowed: OPTION_NAMES.rw, scoped: false },
  scope: { name: 'withRead()', allowed: OPTION_NAMES.rw, scoped: true },
};

export const WRITE: RwSide = {
  mode: 'exclusive',
  writer: true,
  take: { name: 'write()', allowed: OPTION_NAMES.rw, scoped: false },
  scope: { name: 'withWrite()', allowed: OPTION_NAMES.rw, scoped: true },
};

/** Takes `side` of the read-write lock on `key`. */
export function take(engine: Engine, side: RwSide, key: string, options: unknown): Promise<Lock> {
  return engine.take(side.take, key, options, side);
}

/** Runs `fn` holding `side` of the lock (auto-renewed unless `autoRenew: false`), then releases it. */
export function scoped<T>(engine: Engine, side: RwSide, key: string, fn: (lock: Lock) => Promise<T> | T, options: unknown): Promise<T> {
  return engine.scoped(() => engine.take(side.scope, key, options, side), fn, key);
}
