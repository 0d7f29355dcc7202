// Pool membership of the file backend: a record file per pool beside the lock files
// ("<pool key>.lock.pool"), a JSON array of the members, opened as lock files are (no symlinks, ours,
// owner-only unless `mode` says otherwise), read under its shared lock and rewritten under its
// exclusive one, so every process on the host sees one list. The last member's removal removes the file; whoever
// opened it before checks, once it holds the lock, that it is still the file at the path.
//
// The record is rewritten in place (the lock is the file's: a new file renamed over it would not be
// locked), so the list ends with a newline and is read up to it: a process killed between the write
// and the truncate leaves the new list followed by the old one's tail, which is then ignored.
//
// Waking: a pool's waiters watch the lock file of the pool's key, as any waiter does (watch.ts), so a
// change that can let one in opens that file for writing and closes it (the close is the event).
// Reading the members makes that file if it is missing (read-only, which wakes nobody), so a waiter
// always has a file to watch and never finds its key "free" over and over.

import { closeSync, constants, fstatSync, ftruncateSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { LockAcquisitionError } from '../../errors.js';
import { addTo, removeFrom, type PoolStore } from '../shared/pools.js';
import { diskFull, type Files } from './lockfile.js';
import { EXCLUSIVE, SHARED } from './native.js';

const SUFFIX = '.pool';

export class FilePools implements PoolStore {
  constructor(private readonly files: Files) {}

  async add(pool: string, members: readonly string[], max: number): Promise<number | null> {
    let added: number | null = null;
    await this.#change(pool, true, (set) => (added = addTo(set, members, max)) !== null && added > 0);
    if (added) this.#wake(pool);
    return added;
  }

  async remove(pool: string, members: readonly string[]): Promise<number> {
    let removed = 0;
    await this.#change(pool, false, (set) => (removed = removeFrom(set, members)) > 0);
    return removed;
  }

  async assign(pool: string, members: readonly string[]): Promise<void> {
    await this.#change(pool, members.length > 0, (set) => {
      set.clear();
      for (const m of members) set.add(m);
      return true;
    });
    this.#wake(pool);
  }

  async members(pool: string): Promise<string[]> {
    const fd = await this.#locked(pool, false, SHARED);
    this.#watchable(pool);
    if (fd === undefined) return [];
    try {
      return [...this.#read(fd, pool)];
    } finally {
      closeSync(fd); // drops the lock
    }
  }

  async notify(pool: string): Promise<void> {
    this.#wake(pool);
    return Promise.resolve();
  }

  /**
   * Reads the record, lets `edit` change the set (true: it did), writes it back (or removes the file
   * when empty), all under the record's lock.
   */
  async #change(pool: string, create: boolean, edit: (set: Set<string>) => boolean): Promise<void> {
    const fd = await this.#locked(pool, create, EXCLUSIVE);
    if (fd === undefined) {
      edit(new Set());
      return;
    }
    try {
      const set = this.#read(fd, pool);
      const changed = edit(set);
      if (set.size === 0) unlinkSync(this.#path(pool));
      else if (changed) this.#write(fd, set, pool);
    } finally {
      closeSync(fd);
    }
  }

  #path(pool: string): string {
    return `${this.files.pathOf(pool)}${SUFFIX}`;
  }

  #read(fd: number, pool: string): Set<string> {
    const size = fstatSync(fd).size;
    if (size === 0) return new Set();
    const buffer = Buffer.alloc(size);
    const got = readSync(fd, buffer, 0, size, 0);
    // Up to the newline; a record with none (the whole file) is one from before the newline was written.
    const end = buffer.subarray(0, got).indexOf(0x0a);
    try {
      const list = JSON.parse(buffer.toString('utf8', 0, end < 0 ? got : end)) as unknown;
      if (Array.isArray(list) && list.every((m) => typeof m === 'string')) return new Set(list);
    } catch {
      // Reported below, as any record of another shape.
    }
    throw new LockAcquisitionError(`pool "${pool}": its record ${this.#path(pool)} is not a list of members`, { key: pool });
  }

  #write(fd: number, set: Set<string>, pool: string): void {
    const data = Buffer.from(`${JSON.stringify([...set])}\n`, 'utf8');
    try {
      writeSync(fd, data, 0, data.length, 0);
      ftruncateSync(fd, data.length);
    } catch (error) {
      throw diskFull(error, pool);
    }
  }

  /**
   * The record file, opened safely, locked (`type`: shared to read, exclusive to change), and still
   * the one at its path (undefined: none, and not `create`).
   */
  #locked(pool: string, create: boolean, type: typeof SHARED | typeof EXCLUSIVE): Promise<number | undefined> {
    return this.files.openLocked(this.#path(pool), pool, create, type, `pool "${pool}"`);
  }

  /** Makes the pool key's lock file if missing (after #locked made the directory), read-only: its close wakes nobody. */
  #watchable(pool: string): void {
    const opened = this.files.openChecked(this.files.pathOf(pool), constants.O_RDONLY | constants.O_CREAT, pool);
    if (opened) closeSync(opened[0]);
  }

  /** Wakes the pool's waiters: their watch fires on the close of its key's file opened for writing. */
  #wake(pool: string): void {
    const opened = this.files.openChecked(this.files.pathOf(pool), constants.O_WRONLY, pool);
    if (opened) closeSync(opened[0]);
  }
}
