// Rate buckets of a MemoryStore: one TAT per key (see backends/shared/gcra.ts). A bucket that is full
// again holds nothing worth keeping, so it is dropped: on its next take, or in a pass over all buckets
// whenever their number has doubled since the last pass (amortized O(1), and no timer).

import { performance } from 'node:perf_hooks';
import { gcra, type RateDecision, type RateRequest } from '../shared/gcra.js';

/** Epoch ms that never steps back with the wall clock (rates must not jump when NTP adjusts it). */
const clock = (): number => performance.timeOrigin + performance.now();

export class MemoryRates {
  readonly #tats = new Map<string, number>();
  #prunedAt = 0;

  take(request: RateRequest): RateDecision {
    const now = clock();
    const stored = this.#tats.get(request.key);
    const { decision, tat } = gcra(stored !== undefined && stored > now ? stored : undefined, now, request);
    if (tat !== undefined) this.#tats.set(request.key, tat);
    else if (stored !== undefined && stored <= now) this.#tats.delete(request.key);
    if (this.#tats.size > 2 * this.#prunedAt + 1_024) this.#prune(now);
    return decision;
  }

  reset(key: string): void {
    this.#tats.delete(key);
  }

  /** Buckets not yet full again (for tests: nothing may be left behind). */
  get size(): number {
    this.#prune(clock());
    return this.#tats.size;
  }

  #prune(now: number): void {
    for (const [key, tat] of this.#tats) if (tat <= now) this.#tats.delete(key);
    this.#prunedAt = this.#tats.size;
  }
}
