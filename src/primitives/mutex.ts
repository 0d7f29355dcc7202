// Exclusive locks: one holder at a time. Each public call is a CallShape (what it is called, which
// options it takes, what it fixes), so the engine validates every call the same way.

import type { CallShape, Engine } from '../core/engine.js';
import type { Lock } from '../lock.js';
import { OPTION_NAMES } from '../options.js';
import { nullOnTimeout } from './outcomes.js';

const ACQUIRE: CallShape = { name: 'acquire()', allowed: OPTION_NAMES.acquire, scoped: false };
const TRY_ACQUIRE: CallShape = { name: 'tryAcquire()', allowed: OPTION_NAMES.tryAcquire, scoped: false, wait: 0 };
const WITH_LOCK: CallShape = { name: 'withLock()', allowed: OPTION_NAMES.acquire, scoped: true };
const EXCLUSIVE = { mode: 'exclusive' } as const;

export function acquire(engine: Engine, key: string, options: unknown): Promise<Lock> {
  return engine.take(ACQUIRE, key, options, EXCLUSIVE);
}

export function tryAcquire(engine: Engine, key: string, options: unknown): Promise<Lock | null> {
  return nullOnTimeout(engine.take(TRY_ACQUIRE, key, options, EXCLUSIVE));
}

export function withLock<T>(engine: Engine, key: string, fn: (lock: Lock) => Promise<T> | T, options: unknown): Promise<T> {
  return engine.scoped(() => engine.take(WITH_LOCK, key, options, EXCLUSIVE), fn, key);
}
