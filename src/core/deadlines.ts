// One timer for many deadlines.
import { performance } from 'node:perf_hooks';

export interface Expiring {
  /** performance.now() ms after which the lease may be gone. */
  readonly deadline: number;
  expire(): void;
  /**
   * Deadlines' own bookkeeping: the entry's index in the watched list, -1 when not watched. An index
   * kept on the entry makes watch and unwatch a push and a swap, where a Set hashed every new entry
   * (a seventh of an uncontended in-process acquire+release).
   */
  deadlineIndex: number;
}

/**
 * Things that expire at a deadline, with one timer for all of them, armed for the earliest: a new
 * entry usually ends after the armed one, so adding one costs no timer, and removing one costs none
 * either (an early firing finds nothing due and re-arms). An entry with an infinite deadline is only
 * kept in the list (a lease kept by a connection).
 *
 * One per Locksmith for held leases (unref'd: a held lock does not keep a process alive) and one for
 * waits (kept alive while anyone waits: a caller awaiting a lock is foreground work).
 */
export class Deadlines<L extends Expiring> {
  readonly #watched: L[] = [];
  readonly #keepAlive: boolean;
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  constructor(options: { keepAlive: boolean } = { keepAlive: false }) {
    this.#keepAlive = options.keepAlive;
  }

  get size(): number {
    return this.#watched.length;
  }

  /** A snapshot: callers expire or release what they iterate, which unwatches it. */
  [Symbol.iterator](): IterableIterator<L> {
    return [...this.#watched].values();
  }

  /** Watches `lease`; one already watched is only looked at again, as by moved(). */
  watch(lease: L): void {
    if (lease.deadlineIndex < 0) {
      lease.deadlineIndex = this.#watched.length;
      this.#watched.push(lease);
    }
    if (lease.deadline < this.#armedFor) this.#arm(lease.deadline);
  }

  unwatch(lease: L): void {
    const at = lease.deadlineIndex;
    if (at < 0 || this.#watched[at] !== lease) return;
    const last = this.#watched.pop()!;
    if (last !== lease) {
      this.#watched[at] = last;
      last.deadlineIndex = at;
    }
    lease.deadlineIndex = -1;
    // A timer kept alive for nothing would hold the process open.
    if (this.#keepAlive && this.#watched.length === 0 && this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = Infinity;
    }
  }

  /** A watched lease's deadline moved (extended): only an earlier one needs the timer moved. */
  moved(lease: L): void {
    if (lease.deadlineIndex >= 0 && lease.deadline < this.#armedFor) this.#arm(lease.deadline);
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
    // Backwards, so the swap of an unwatch only moves entries already looked at. An expire() may
    // unwatch others (looked at again, harmlessly) or watch new ones (they arm the timer themselves).
    for (let i = this.#watched.length - 1; i >= 0; i--) {
      const lease = this.#watched[i];
      if (lease === undefined) continue;
      if (lease.deadline <= now) {
        this.unwatch(lease);
        lease.expire();
      } else if (lease.deadline < next) next = lease.deadline;
    }
    if (next < this.#armedFor) this.#arm(next);
  }
}
