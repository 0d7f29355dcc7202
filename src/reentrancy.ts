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

/** 128 random bits, base64url: unguessable, so no other process can release our lease by accident. */
export function newOwner(): string {
  return randomBytes(16).toString('base64url');
}

export function scopeOwner(): string | undefined {
  return scopes.getStore()?.owner;
}

export function runInScope<T>(owner: string, fn: () => T): T {
  return scopes.run({ owner }, fn);
}

/** Counts nested holds of one lease by one owner; the lease itself is released when this reaches 0. */
export class HoldRegistry<L> {
  readonly #held = new Map<string, L>();

  static id(key: string, owner: string): string {
    // The length prefix makes the pair unambiguous whatever characters the owner and key contain.
    return `${owner.length}:${owner}\u0000${key}`;
  }

  get(key: string, owner: string): L | undefined {
    return this.#held.get(HoldRegistry.id(key, owner));
  }

  set(key: string, owner: string, lease: L): void {
    this.#held.set(HoldRegistry.id(key, owner), lease);
  }

  delete(key: string, owner: string, lease: L): void {
    const id = HoldRegistry.id(key, owner);
    if (this.#held.get(id) === lease) this.#held.delete(id);
  }

  get size(): number {
    return this.#held.size;
  }

  values(): IterableIterator<L> {
    return this.#held.values();
  }
}
