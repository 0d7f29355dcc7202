// The lock file's byte ranges other than MAIN (INTENT, META, SLOTS + i; what each is for: index.ts).
// With OFD locks they are ranges of the one file. flock(2) locks whole files, so the flock build
// keeps each in a file of its own next to the lock file ("<name>.lock.meta", ".intent", ".slot<i>"),
// opened as safely as the lock file and kept open with it. A sweep removes them before the lock file
// (while it holds MAIN exclusively, so no holder uses them): whoever opens them afterwards opens
// fresh ones, which belong to the next lock file.

import { closeSync, constants, unlinkSync } from 'node:fs';
import { EXCLUSIVE, INTENT, META, SLOTS, UNLOCK } from './native.js';
import type { Files, LockFile } from './lockfile.js';

function suffix(range: number): string {
  return range === INTENT ? 'intent' : range === META ? 'meta' : `slot${range - SLOTS}`;
}

export class Ranges {
  constructor(private readonly files: Files) {}

  get #flock(): boolean {
    return this.files.locks.kind === 'flock';
  }

  #fd(file: LockFile, range: number): number {
    if (!this.#flock) return file.fd;
    let fd = file.aux?.get(range);
    if (fd === undefined) {
      fd = this.files.openChecked(`${file.path}.${suffix(range)}`, constants.O_RDWR | constants.O_CREAT)![0];
      (file.aux ??= new Map()).set(range, fd);
    }
    return fd;
  }

  lock(file: LockFile, type: 0 | 1 | 2, range: number): boolean {
    return this.files.locks.lock(this.#fd(file, range), type, range, 1);
  }

  probe(file: LockFile, type: 1 | 2, range: number): 0 | 1 | 2 {
    return this.files.locks.probe(this.#fd(file, range), type, range, 1);
  }

  /** Drops every lock `file` holds (MAIN included) without waking anyone. */
  unlockAll(file: LockFile): void {
    const l = this.files.locks;
    l.lock(file.fd, UNLOCK, 0, 0); // length 0: every range this open file holds
    for (const fd of file.aux?.values() ?? []) l.lock(fd, UNLOCK, 0, 0);
  }

  /** After a release of MAIN (which the addon does, with the wake-up): the other ranges too. */
  unlockAux(file: LockFile): void {
    if (file.aux) for (const fd of file.aux.values()) this.files.locks.lock(fd, UNLOCK, 0, 0);
  }

  /** A descriptor of its own holding a read lock on `key`'s INTENT, or undefined when it could not. */
  announce(key: string): number | undefined {
    const path = this.files.pathOf(key);
    const fd = this.files.openChecked(this.#flock ? `${path}.${suffix(INTENT)}` : path, constants.O_RDWR | constants.O_CREAT, key)![0];
    if (this.files.locks.lock(fd, 1, INTENT, 1)) return fd;
    closeSync(fd);
    return undefined;
  }

  /** flock build: removes `file`'s range files, for a sweeper that holds MAIN exclusively. */
  sweep(file: LockFile): void {
    if (!this.#flock) return;
    const gone = (name: string): boolean => {
      try {
        unlinkSync(`${file.path}.${name}`);
        return true;
      } catch {
        return false;
      }
    };
    gone(suffix(META));
    // A writer waiting holds INTENT: its file stays while it does (taking it here proves nobody does).
    if (this.lock(file, EXCLUSIVE, INTENT)) gone(suffix(INTENT));
    // Permits take the lowest free slot, creating slot files in order, so they end at the first gap.
    for (let slot = 0; gone(suffix(SLOTS + slot)); slot++);
  }
}
