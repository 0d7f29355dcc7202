// Counters and latency percentiles of one Locksmith. Percentiles come from the most recent samples
// (a fixed ring), so memory stays constant however many locks pass and the numbers follow the
// current load rather than the whole life of the process.

/** Samples kept per series: enough for a stable p99, small enough to sort on every stats() call. */
const WINDOW = 1024;

/** p50 and p99 of the recent samples, ms; 0 before the first sample. */
export interface Percentiles {
  p50: number;
  p99: number;
  /** Samples behind the figures (at most the window). */
  samples: number;
}

export class Recent {
  readonly #ring = new Float64Array(WINDOW);
  #count = 0;

  add(ms: number): void {
    this.#ring[this.#count % WINDOW] = ms;
    this.#count += 1;
  }

  percentiles(): Percentiles {
    const n = Math.min(this.#count, WINDOW);
    if (n === 0) return { p50: 0, p99: 0, samples: 0 };
    const sorted = this.#ring.slice(0, n).sort();
    const at = (p: number): number => sorted[Math.min(n - 1, Math.ceil(p * n) - 1)]!;
    return { p50: at(0.5), p99: at(0.99), samples: n };
  }
}

export interface Counters {
  /** Leases granted (reentrant holds not counted again). */
  acquired: number;
  released: number;
  extended: number;
  lost: number;
  /** Acquisitions that gave up because `wait` elapsed. */
  timeouts: number;
  /** Acquisitions that failed because the backend did. */
  failures: number;
  /** Acquisitions that had to wait at least once. */
  contended: number;
  /** Total and longest time spent waiting by granted acquisitions, ms. */
  waitTotal: number;
  waitMax: number;
}

export function counters(): Counters {
  return { acquired: 0, released: 0, extended: 0, lost: 0, timeouts: 0, failures: 0, contended: 0, waitTotal: 0, waitMax: 0 };
}
