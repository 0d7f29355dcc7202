// One call at a time per key from this process: a call on a key starts once the one before it on
// that key has settled (whichever way), and calls on different keys never wait for each other.

export class PerKey {
  /** Per key: the last call's settling, which never rejects. */
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, call: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key);
    let mine: Promise<T>;
    try {
      mine = before ? before.then(call) : call();
    } catch (error) {
      mine = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    // The entry goes as the call settles, before the caller hears of it (its handlers were attached
    // first), unless a later call took its place. No async wrapper: on a lock's every grant, that
    // would be two more promises.
    const done = (): void => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
    const tail: Promise<unknown> = mine.then(done, done);
    this.#tails.set(key, tail);
    return mine;
  }
}
