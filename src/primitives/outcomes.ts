// Outcomes the primitives turn into values.

import { LockTimeoutError } from '../errors.js';

/** tryAcquire-style: a timeout means "not now", which is null. */
export async function nullOnTimeout<T>(pending: Promise<T>): Promise<T | null> {
  try {
    return await pending;
  } catch (error) {
    if (error instanceof LockTimeoutError) return null;
    throw error;
  }
}
