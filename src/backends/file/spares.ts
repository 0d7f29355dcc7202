// Spare lock files: a released file stays open for `linger` ms, so a name used again soon costs no
// open and no re-create; then it is swept (removed) if nobody holds it.

import { unlinkSync } from 'node:fs';
import { EXCLUSIVE, MAIN } from './native.js';
import type { Files, LockFile } from './lockfile.js';
import type { Ranges } from './ranges.js';

interface Parked {
  files: LockFile[];
  timer: NodeJS.Timeout;
}

export class Spares {
  readonly #idle = new Map<string, Parked>();
  constructor(
    private readonly files: Files,
    private readonly ranges: Ranges,
    private readonly linger: number,
  ) {}

  /** A parked file of `key`, if any (saves an open and a create). */
  take(key: string): LockFile | undefined {
    return this.#idle.get(key)?.files.pop();
  }

  /**
   * Parks a file that holds no lock (`unlocked`), or drops its locks first. Every file parked while
   * the name is busy is kept until the name is idle for `linger`: closing one at once would be a
   * change event (IN_CLOSE_WRITE) that wakes every waiter, whose attempts would park and close files
   * of their own, and so on.
   */
  park(key: string, file: LockFile, unlocked = false): void {
    if (!unlocked) this.ranges.unlockAll(file);
    if (this.linger === 0) return this.#sweep(file);
    let spares = this.#idle.get(key);
    if (spares) {
      // Only a name left idle for `linger` is swept: sweeping a busy one would make every waiter's
      // watcher watch a deleted file. refresh() re-arms the one timer instead of making a new one.
      spares.timer.refresh();
    } else {
      const created: Parked = { files: [], timer: setTimeout(() => this.#expire(key, created), this.linger) };
      created.timer.unref();
      this.#idle.set(key, (spares = created));
    }
    spares.files.push(file);
  }

  #expire(key: string, spares: Parked): void {
    if (this.#idle.get(key) !== spares) return;
    this.#idle.delete(key);
    const [first, ...rest] = spares.files;
    for (const file of rest) this.files.shut(file);
    if (first) this.#sweep(first);
  }

  /**
   * Removes a lock file nobody holds. Race-free because it happens while we hold MAIN exclusively: an
   * acquirer that opened the old file and locks it afterwards sees a different inode at the path and
   * retries on the new file. The fence counter goes with the file; the next file reseeds it from the
   * clock, so fences still only increase.
   */
  #sweep(file: LockFile): void {
    try {
      if (this.files.locks.lock(file.fd, EXCLUSIVE, MAIN, 1) && this.files.current(file)) {
        this.ranges.sweep(file);
        unlinkSync(file.path);
      }
    } catch {
      // Cleanup is best effort: a file left behind is reused by the next acquisition.
    } finally {
      this.files.shut(file);
    }
  }

  /** Sweeps every parked file now (close()). */
  close(): void {
    for (const [key, spares] of [...this.#idle]) {
      clearTimeout(spares.timer);
      this.#expire(key, spares);
    }
  }
}
