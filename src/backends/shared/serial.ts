// One call at a time per key from this process: a call on a key starts once the one before it on
// that key has settled (whichever way), and calls on different keys never wait for each other.

export class PerKey {
  /** Per key: the last call's settling, which never rejects. */
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, call: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key);
    const mine: Promise<T> = before ? before.then(call) : call();
    const tail = mine.catch(() => undefined);
    this.#tails.set(key, tail);
    try {
      return await mine;
    } finally {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
