// TypeScript standard (TC39) method decorators. `@locks.locked((id) => \`op:${id}\`)` runs the method
// holding the lock named by its arguments; the guard's `cached` decorator lives on StampedeGuard.

import type { Locks } from './locks.js';
import type { AcquireOptions } from '../options.js';
import { checkFunction } from '../options.js';

/** The key function sees the method's leading arguments (any number of them). */
/** Computes a lock's key from a decorated method's arguments. */
export type KeyFn<K extends unknown[]> = (...args: K) => string;
/** A method that returns a promise: what `locks.locked()` and `guard.cached()` decorate. */
export type AsyncMethod<This, A extends unknown[], R> = (this: This, ...args: A) => Promise<R>;

export function locked<K extends unknown[]>(locks: Locks, key: KeyFn<K>, options?: AcquireOptions) {
  checkFunction(key, 'locked(): key');
  return <This, A extends [...K, ...unknown[]], R>(
    method: AsyncMethod<This, A, R>,
    _context: ClassMethodDecoratorContext<This, AsyncMethod<This, A, R>>,
  ) =>
    function (this: This, ...args: A): Promise<R> {
      return locks.withLock(keyOf(key, args), () => method.apply(this, args), options);
    };
}

/** Calls the key function with the method's arguments (it may declare fewer than the method has). */
export function keyOf<K extends unknown[]>(key: KeyFn<K>, args: readonly unknown[]): string {
  return (key as (...a: readonly unknown[]) => string)(...args);
}
