// Rate buckets of the file backend: one small file per bucket beside the lock files
// ("<name>.lock.rate"), holding its TAT (backends/shared/gcra.ts) as a float64 on the host's
// monotonic clock, which every process on the host shares and which NTP never steps. A take holds the
// file's lock for one read and one write, so every process on the host takes from one bucket at once.
//
// A bucket that is full again holds nothing worth keeping: every 256th take of a backend makes a pass
// over the directory (no timer) that removes such files under their lock, as PostgreSQL's rows go. Whoever opened one before it went checks,
// once it holds the lock, that its file is still the one at the path, and opens the new one if not.

import { closeSync, constants, readdirSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { gcra, type RateDecision, type RateRequest, type RateStore } from '../shared/gcra.js';
import { diskFull, type Files } from './lockfile.js';
import { EXCLUSIVE, UNLOCK } from './native.js';

const SUFFIX = '.rate';
/** One pass over the directory for full buckets per this many takes. */
const SWEEP_EVERY = 256;

/** ms on CLOCK_MONOTONIC (libuv's hrtime on Linux): the same in every process of the host. */
const monotonic = (): number => Number(process.hrtime.bigint()) / 1e6;

const cell = Buffer.alloc(8);

function readTat(fd: number): number | undefined {
  const tat = readSync(fd, cell, 0, 8, 0) === 8 ? cell.readDoubleLE(0) : NaN;
  return Number.isFinite(tat) ? tat : undefined;
}

export class FileRates implements RateStore {
  #takes = 0;

  constructor(private readonly files: Files) {}

  #path(key: string): string {
    return `${this.files.pathOf(key)}${SUFFIX}`;
  }

  async take(r: RateRequest): Promise<RateDecision> {
    // Naming the file refuses a name no file can have (names.ts), before any I/O.
    const path = this.#path(r.key);
    // A look at a bucket that has no file (a full one) must not leave one behind.
    const fd = await this.files.openLocked(path, r.key, !r.peek, EXCLUSIVE, `rate bucket "${r.key}"`);
    if (fd === undefined) return this.#step(undefined, r).decision;
    let decision: RateDecision;
    try {
      const step = this.#step(readTat(fd), r);
      if (step.tat !== undefined) {
        cell.writeDoubleLE(step.tat, 0);
        try {
          writeSync(fd, cell, 0, 8, 0);
        } catch (error) {
          throw diskFull(error, r.key);
        }
      }
      decision = step.decision;
    } finally {
      closeSync(fd); // drops the lock
    }
    if (++this.#takes % SWEEP_EVERY === 0) this.#sweep();
    return decision;
  }

  /** One GCRA step on the monotonic clock: the decision, and the TAT to store (if any). */
  #step(stored: number | undefined, r: RateRequest): { decision: RateDecision; tat: number | undefined } {
    const now = monotonic();
    // A TAT beyond one full burst from now cannot come from these settings on this boot (the host
    // restarted, or the burst shrank): counted as an empty bucket, never as a blocked one for days.
    const tat = stored === undefined ? undefined : Math.min(stored, now + (r.interval / r.limit) * r.burst);
    const step = gcra(tat !== undefined && tat > now ? tat : undefined, now, r);
    // resetAt is epoch ms, as on every backend.
    return { decision: { ...step.decision, resetAt: Math.ceil(step.decision.resetAt - now + Date.now()) }, tat: step.tat };
  }

  reset(key: string): Promise<void> {
    // Unlinking is enough: a take that holds the old file's lock counts as having come before.
    try {
      unlinkSync(this.#path(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    return Promise.resolve();
  }

  /** Removes the files of buckets that are full again; one busy or foreign file is skipped, not waited for. */
  #sweep(): void {
    let names: string[];
    try {
      names = readdirSync(this.files.dir).filter((n) => n.endsWith(`.lock${SUFFIX}`));
    } catch {
      return; // no directory yet: nothing to sweep
    }
    for (const name of names) {
      const path = join(this.files.dir, name);
      let fd: number | undefined;
      try {
        [fd] = this.files.openChecked(path, constants.O_RDWR) ?? [];
        if (fd === undefined || !this.files.locks.lock(fd, EXCLUSIVE, 0, 1)) continue;
        const tat = readTat(fd);
        if (tat === undefined || tat <= monotonic()) unlinkSync(path);
        this.files.locks.lock(fd, UNLOCK, 0, 1);
      } catch {
        // A file that is not ours, or gone meanwhile: not this pass's business.
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
  }
}
