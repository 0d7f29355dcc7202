// One timer for many deadlines.

export interface Expiring {
  /** performance.now() ms after which the lease may be gone. */
  readonly deadline: number;
  expire(): void;
}

/**
 * Things that expire at a deadline, with one timer for all of them, armed for the earliest: a new
 * entry usually ends after the armed one, so adding one costs no timer, and removing one costs none
 * either (an early firing finds nothing due and re-arms). An entry with an infinite deadline is only
 * kept in the set (a lease kept by a connection).
 *
 * One per Locksmith for held leases (unref'd: a held lock does not keep a process alive) and one for
 * waits (kept alive while anyone waits: a caller awaiting a lock is foreground work).
 */
export class Deadlines<L extends Expiring> {
  readonly #watched = new Set<L>();
  readonly #keepAlive: boolean;
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  constructor(options: { keepAlive: boolean } = { keepAlive: false }) {
    this.#keepAlive = options.keepAlive;
  }

  get size(): number {
    return this.#watched.size;
  }

  [Symbol.iterator](): IterableIterator<L> {
    return this.#watched.values();
  }

  watch(lease: L): void {
    this.#watched.add(lease);
    if (lease.deadline < this.#armedFor) this.#arm(lease.deadline);
  }

  unwatch(lease: L): void {
    this.#watched.delete(lease);
    // A timer kept alive for nothing would hold the process open.
    if (this.#keepAlive && this.#watched.size === 0 && this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = Infinity;
    }
  }

  /** A watched lease's deadline moved (extended): only an earlier one needs the timer moved. */
  moved(lease: L): void {
    if (this.#watched.has(lease) && lease.deadline < this.#armedFor) this.#arm(lease.deadline);
  }

  #arm(at: number): void {
    if (at === Infinity) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(at - performance.now())));
    if (!this.#keepAlive) this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const lease of this.#watched) {
      if (lease.deadline <= now) {
        this.#watched.delete(lease);
        lease.expire();
      } else if (lease.deadline < next) next = lease.deadline;
    }
    if (next !== Infinity) this.#arm(next);
  }
}
