// Pool membership kept by a backend, so every process lends from one list (redis_allocator's lock
// pools). A store keeps, per pool, a set of member names; it does not lend them: a lent member is an
// ordinary lock (recipes/pool.ts). A pool is named by a key in the lock namespace, and every change
// that can let a waiter in (an add, an assign, `notify`) wakes that key's `waitForChange` waiters in
// every process sharing the backend, so a waiting `pool.acquire()` is woken, not polling.

/** The optional pool store of a backend; each call is atomic on the backend. */
export interface PoolStore {
  /** Adds the members not in yet; null, adding nothing, when the pool would then have more than `max`. */
  add(pool: string, members: readonly string[], max: number): Promise<number | null>;
  /** Removes the members that are in; how many were. */
  remove(pool: string, members: readonly string[]): Promise<number>;
  /** Replaces every member (an empty list removes the pool). */
  assign(pool: string, members: readonly string[]): Promise<void>;
  /** The members, in no particular order. */
  members(pool: string): Promise<string[]>;
  /** Wakes the pool's waiters with no change (a member was given back). */
  notify(pool: string): Promise<void>;
}

/**
 * `members` added to `set`; null (set unchanged) when it would pass `max`. The one rule of an add,
 * shared by the stores that keep a pool as a set in memory (memory, file).
 */
export function addTo(set: Set<string>, members: readonly string[], max: number): number | null {
  const fresh = members.filter((m) => !set.has(m));
  if (set.size + fresh.length > max) return null;
  for (const m of fresh) set.add(m);
  return fresh.length;
}

/** `members` removed from `set`; how many were in it. */
export function removeFrom(set: Set<string>, members: readonly string[]): number {
  let removed = 0;
  for (const m of members) if (set.delete(m)) removed += 1;
  return removed;
}

/**
 * Pools in this process's memory: the memory backend's (shared by every backend over one store), and
 * the in-process list of a pool on a backend that keeps none (Redlock: a quorum of sets is not one
 * list). `wake` is called with the pool's key after a change that can let a waiter in.
 */
export class MemberSets {
  readonly #pools = new Map<string, Set<string>>();

  constructor(private readonly wake: (pool: string) => void) {}

  add(pool: string, members: readonly string[], max: number): number | null {
    const set = this.#pools.get(pool) ?? new Set<string>();
    const added = addTo(set, members, max);
    if (added === null || set.size === 0) return added;
    this.#pools.set(pool, set);
    if (added > 0) this.wake(pool);
    return added;
  }

  remove(pool: string, members: readonly string[]): number {
    const set = this.#pools.get(pool);
    if (!set) return 0;
    const removed = removeFrom(set, members);
    if (set.size === 0) this.#pools.delete(pool);
    return removed;
  }

  assign(pool: string, members: readonly string[]): void {
    if (members.length === 0) this.#pools.delete(pool);
    else this.#pools.set(pool, new Set(members));
    this.wake(pool);
  }

  members(pool: string): string[] {
    return [...(this.#pools.get(pool) ?? [])];
  }

  /** As a PoolStore (promise-shaped, as a network backend's). */
  store(): PoolStore {
    return {
      add: (pool, members, max) => Promise.resolve(this.add(pool, members, max)),
      remove: (pool, members) => Promise.resolve(this.remove(pool, members)),
      assign: (pool, members) => Promise.resolve(this.assign(pool, members)),
      members: (pool) => Promise.resolve(this.members(pool)),
      notify: (pool) => Promise.resolve(this.wake(pool)),
    };
  }
}
