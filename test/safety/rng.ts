// A small seeded generator (mulberry32): the same seed gives the same fault schedule and think times,
// so a failing run can be replayed with SAFETY_SEED. Operating-system scheduling still varies.

export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** A seed for something else, derived from this stream. */
  seed(): number {
    return this.int(0, 0xffffffff);
  }
}

/** A stable 32-bit seed from a base seed and labels (e.g. backend and fault), FNV-1a. */
export function deriveSeed(base: number, ...labels: string[]): number {
  let h = 0x811c9dc5 ^ (base >>> 0);
  for (const ch of labels.join('\u0000')) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
