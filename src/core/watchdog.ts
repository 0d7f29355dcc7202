// Auto-renewal. Renews at ttl/3; a failed renewal (a slow or briefly unreachable backend) is retried
// after ttl/6, so several can fail before the lease runs out. It never throws: a refused renewal marks
// the lease lost at once, a failed one is reported and retried, and the lease's deadline declares it
// lost if no renewal lands in time.

export interface Renewable {
  readonly ttl: number;
  readonly live: boolean;
  /** Resolves true when renewed, false when the backend says the lease is gone; may reject. */
  renew(): Promise<boolean>;
  refused(): void;
  failed(error: unknown): void;
}

export class Watchdog {
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #target: Renewable;

  constructor(target: Renewable) {
    this.#target = target;
    this.#schedule();
  }

  #schedule(fraction = 3): void {
    if (this.#stopped || !this.#target.live) return;
    this.#timer = setTimeout(() => void this.#tick(), Math.max(1, Math.floor(this.#target.ttl / fraction)));
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    this.#timer = undefined;
    if (this.#stopped || !this.#target.live) return;
    try {
      if (!(await this.#target.renew())) {
        if (!this.#stopped) this.#target.refused();
        return;
      }
    } catch (error) {
      if (!this.#stopped) this.#target.failed(error);
      this.#schedule(6);
      return;
    }
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

export interface Expiring {
  /** performance.now() ms after which the lease may be gone. */
  readonly deadline: number;
  expire(): void;
}

/**
 * The held leases, declared lost when their deadline passes, with one timer for all of them, armed for
 * the earliest deadline. A new lease usually ends after the armed one, so acquiring costs no timer.
 * Leases that live with a connection have an infinite deadline and are only kept in the set.
 */
export class Deadlines<L extends Expiring> {
  readonly #watched = new Set<L>();
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

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
    this.#timer.unref();
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
