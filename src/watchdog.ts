// Auto-renewal. Renews at ttl/3 so that two renewals can fail (a slow or briefly unreachable backend)
// before the lease runs out. It never throws: a refused renewal marks the lease lost at once, a failed
// one is reported and retried on the next tick, and the lease's own expiry timer declares it lost if no
// renewal lands in time.

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

  #schedule(): void {
    if (this.#stopped || !this.#target.live) return;
    this.#timer = setTimeout(() => void this.#tick(), Math.max(1, Math.floor(this.#target.ttl / 3)));
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
    }
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
