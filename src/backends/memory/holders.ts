// The holders of one key in the memory store. Almost every key has at most one (an exclusive lock, or
// a single reader), so the first holder is kept in two fields and only a second one opens a Map: an
// uncontended acquire+release then hashes no owner string, which was a tenth of its cost.

export interface Holder {
  fence: bigint;
  /** performance.now() ms. */
  deadline: number;
}

export class Holders {
  #owner: string | undefined;
  #holder: Holder | undefined;
  /** Every holder after the first, while there are several (shared leases). */
  #more: Map<string, Holder> | undefined;

  get size(): number {
    return (this.#owner === undefined ? 0 : 1) + (this.#more?.size ?? 0);
  }

  get(owner: string): Holder | undefined {
    return this.#owner === owner ? this.#holder : this.#more?.get(owner);
  }

  set(owner: string, holder: Holder): void {
    if (this.#owner === undefined || this.#owner === owner) {
      this.#owner = owner;
      this.#holder = holder;
    } else (this.#more ??= new Map()).set(owner, holder);
  }

  /** Forgets `owner`'s hold; true if it had one. */
  delete(owner: string): boolean {
    if (this.#owner !== owner) return this.#more?.delete(owner) ?? false;
    this.#owner = this.#holder = undefined;
    // Another holder moves into the fields, so `size` and `get` need not look in two places for it.
    const next = this.#more?.entries().next();
    if (next && !next.done) {
      const [owner, holder] = next.value;
      this.#more!.delete(owner);
      this.#owner = owner;
      this.#holder = holder;
    }
    if (this.#more?.size === 0) this.#more = undefined;
    return true;
  }

  /** Drops every holder whose deadline is at or before `now`; true if any was. */
  dropExpired(now: number): boolean {
    let dropped = false;
    // A Map may lose entries while it is iterated; the first holder is looked at last, as deleting it
    // moves one of the others into its place.
    for (const [owner, holder] of this.#more ?? []) {
      if (holder.deadline <= now) dropped = this.#more!.delete(owner);
    }
    if (this.#more?.size === 0) this.#more = undefined;
    if (this.#owner !== undefined && this.#holder!.deadline <= now) dropped = this.delete(this.#owner);
    return dropped;
  }

  /** The earliest deadline, Infinity with no holder. */
  soonest(): number {
    let soonest = this.#holder?.deadline ?? Infinity;
    for (const h of this.#more?.values() ?? []) soonest = Math.min(soonest, h.deadline);
    return soonest;
  }

  /** A snapshot of [owner, holder] pairs. */
  list(): [string, Holder][] {
    const all: [string, Holder][] = this.#owner === undefined ? [] : [[this.#owner, this.#holder!]];
    for (const entry of this.#more ?? []) all.push(entry);
    return all;
  }
}
