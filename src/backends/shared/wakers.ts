// Waiters parked per key until something about the key changes. Every backend (and the core, for
// this process's own releases) keeps one: a set of callbacks per key, each called at most once.

export class Wakers {
  readonly #sets = new Map<string, Set<() => void>>();

  /** Calls `wake` on the next wake(key) or wakeAll(); the returned function withdraws it first. */
  add(key: string, wake: () => void): () => void {
    let set = this.#sets.get(key);
    if (!set) this.#sets.set(key, (set = new Set()));
    set.add(wake);
    return () => {
      const current = this.#sets.get(key);
      if (!current?.delete(wake)) return;
      if (current.size === 0) this.#sets.delete(key);
    };
  }

  /** Settles on the next wake of `key`, or when `signal` aborts (never rejects). */
  wait(key: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const withdraw = this.add(key, done);
      const onAbort = (): void => {
        withdraw();
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Someone waits on `key` here. (Looked at first: the size, so a key nobody waits on is not hashed.) */
  has(key: string): boolean {
    return this.#sets.size > 0 && this.#sets.has(key);
  }

  /** Keys with waiters, for a caller that must find out for each whether it changed. */
  keys(): string[] {
    return [...this.#sets.keys()];
  }

  /** Wakes every waiter on `key`; they are gone afterwards (a waiter that wants more adds itself again). */
  wake(key: string): void {
    if (this.#sets.size === 0) return;
    const set = this.#sets.get(key);
    if (!set) return;
    this.#sets.delete(key);
    for (const wake of set) wake();
  }

  wakeAll(): void {
    for (const key of [...this.#sets.keys()]) this.wake(key);
  }
}
