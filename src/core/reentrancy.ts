// Reentrancy needs an idea of "the same caller". Node has no threads, so the caller is either an
// explicit `owner`, or the async context of a `withLock`/`withRead`/`withWrite`/`withPermit` scope:
// the scope runs its function inside AsyncLocalStorage, and reentrant acquires made anywhere below it
// (however many awaits deep) act as that scope's owner. A bare `acquire()` cannot mark its caller's
// context without leaking it into sibling tasks, so outside a scope pass `owner: lock.owner` to re-enter.

import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

interface Scope {
  owner: string;
}

const scopes = new AsyncLocalStorage<Scope>();

// Owners are an instance id drawn from crypto once per process (96 bits) plus a counter, the way
// Redisson pairs a client UUID with a thread id: unique across processes and restarts, and far cheaper
// than fresh entropy per lock. Owners are not secrets (inspect() shows them); uniqueness is what
// keeps one holder from releasing another's lease.
const instance = randomBytes(12).toString('base64url');
let counter = 0;

export function newOwner(): string {
  counter += 1;
  return `${instance}.${counter.toString(36)}`;
}

export function scopeOwner(): string | undefined {
  return scopes.getStore()?.owner;
}

export function runInScope<T>(owner: string, fn: () => T): T {
  return scopes.run({ owner }, fn);
}

interface Keyed {
  readonly key: string;
}

/**
 * The leases this process holds, found by owner and key. Most owners hold one key, so an owner maps
 * straight to its lease and only an owner of several keys (acquireAll, explicit owners) gets a Map.
 */
export class HoldRegistry<L extends Keyed> {
  readonly #byOwner = new Map<string, L | Map<string, L>>();

  get(key: string, owner: string): L | undefined {
    const found = this.#byOwner.get(owner);
    if (found instanceof Map) return found.get(key);
    return found?.key === key ? found : undefined;
  }

  set(key: string, owner: string, lease: L): void {
    const found = this.#byOwner.get(owner);
    if (found === undefined || (!(found instanceof Map) && found.key === key)) this.#byOwner.set(owner, lease);
    else if (found instanceof Map) found.set(key, lease);
    else
      this.#byOwner.set(
        owner,
        new Map([
          [found.key, found],
          [key, lease],
        ]),
      );
  }

  delete(key: string, owner: string, lease: L): void {
    const found = this.#byOwner.get(owner);
    if (found === lease) this.#byOwner.delete(owner);
    else if (found instanceof Map && found.get(key) === lease) {
      found.delete(key);
      if (found.size === 0) this.#byOwner.delete(owner);
    }
  }

  *values(): IterableIterator<L> {
    for (const found of this.#byOwner.values()) {
      if (found instanceof Map) yield* found.values();
      else yield found;
    }
  }
}
