// Opening lock files safely on a shared host: never through a symlink (O_NOFOLLOW), never into a child (O_CLOEXEC), never a file
// another user planted (fstat: a regular file, ours, or our group's when `mode` shares it), created
// with `mode` (default 0600), the header page allocated before it is mapped (native/header.h).

import { performance } from 'node:perf_hooks';
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, openSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../core/time.js';
import { LockAcquisitionError } from '../../errors.js';
import { prepareDefault, prepareGiven } from './directory.js';
import { native, type FileLocks, type Header } from './native.js';
import { fileNameFor } from './names.js';

/** How long a record file's lock is tried for (openLocked). */
const PATIENCE_MS = 2_000;

// libuv opens every file O_CLOEXEC already (node has no constant for it), so no child inherits one.
const SAFE = constants.O_NOFOLLOW;

export interface LockFile {
  fd: number;
  path: string;
  /** Fixed for the life of the descriptor: tells whether the path still names this file. */
  ino: number;
  header: Header;
  /** The shared records' size as last read or written (records.ts). */
  size: number;
  /** flock build: the files standing in for this file's byte ranges, by range (ranges.ts). */
  aux: Map<number, number> | undefined;
}

/** ENOSPC and EDQUOT, from node or the addon, as the LockAcquisitionError they are. */
export function diskFull(error: unknown, key: string | undefined): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return error;
  const what = code === 'ENOSPC' ? 'no space left on the device' : 'the disk quota is exhausted';
  return new LockAcquisitionError(`the file backend cannot write its lock file: ${what}`, { key, cause: error });
}

export class Files {
  #locks: FileLocks | undefined;
  readonly #uid = process.geteuid?.();
  /** The groups whose members' files we accept, when `mode` shares files with the group. */
  readonly #groups: Set<number> | undefined;

  constructor(
    readonly dir: string,
    readonly mode: number,
    private readonly isDefault: boolean,
  ) {
    this.#groups = mode & 0o060 && process.getgroups ? new Set([...process.getgroups(), process.getegid?.() ?? -1]) : undefined;
  }

  /** The addon, with the directory made (and, for the default one, checked) on first use. */
  get locks(): FileLocks {
    if (this.#locks) return this.#locks;
    const l = native();
    if (this.isDefault) prepareDefault(this.dir);
    else prepareGiven(this.dir, this.mode);
    return (this.#locks = l);
  }

  pathOf(key: string): string {
    return join(this.dir, fileNameFor(key));
  }

  /**
   * Opens `path` without following a symlink and checks what it opened; undefined when it does not
   * exist (and `flags` has no O_CREAT). A file that is not ours is refused before anything is written.
   */
  openChecked(path: string, flags: number, key?: string): [fd: number, st: Stats] | undefined {
    let fd: number;
    try {
      fd = openSync(path, flags | SAFE, this.mode);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !(flags & constants.O_CREAT)) return undefined;
      // ELOOP: the path is a symlink (O_NOFOLLOW).
      if (code === 'ELOOP') throw new LockAcquisitionError(`the file backend refuses ${path}: it is a symlink`, { key, cause: error });
      throw diskFull(error, key);
    }
    try {
      return [fd, this.#check(fd, path, key)];
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  #check(fd: number, path: string, key: string | undefined): Stats {
    const st = fstatSync(fd);
    const ours = this.#uid === undefined || st.uid === this.#uid;
    const why = !st.isFile()
      ? 'it is not a regular file'
      : !ours && !this.#groups?.has(st.gid)
        ? `it belongs to uid ${st.uid}, not to this user`
        : undefined;
    if (why) throw new LockAcquisitionError(`the file backend refuses ${path}: ${why}`, { key });
    // Ours but looser than asked (made by an older version, or by a umask that dropped group bits
    // the caller asked for): fix it, or anyone it lets in could hold a read lock for ever.
    if (ours && (st.mode & 0o777) !== this.mode) fchmodSync(fd, this.mode);
    return st;
  }

  /**
   * A small record file beside the lock files (a rate bucket, a pool's members): opened safely, locked
   * (`type`: shared to read, exclusive to change; others hold it for one read and one write, so this
   * tries every ms up to PATIENCE_MS), and still the file at `path`: one removed while we waited is
   * left for the one there now. Undefined when there is none and not `create`.
   */
  async openLocked(path: string, key: string, create: boolean, type: 1 | 2, what: string): Promise<number | undefined> {
    const locks = this.locks; // first: it makes (and checks) the directory
    const start = performance.now();
    for (;;) {
      const opened = this.openChecked(path, constants.O_RDWR | (create ? constants.O_CREAT : 0), key);
      if (!opened) return undefined;
      const [fd, st] = opened;
      try {
        while (!locks.lock(fd, type, 0, 1)) {
          if (performance.now() - start > PATIENCE_MS) {
            throw new LockAcquisitionError(`${what}: its file stayed locked for ${PATIENCE_MS} ms (a process paused mid-update?)`, { key });
          }
          await sleep(1);
        }
      } catch (error) {
        closeSync(fd);
        throw error;
      }
      if (lstatSync(path, { throwIfNoEntry: false })?.ino === st.ino) return fd;
      closeSync(fd);
    }
  }

  /** The lock file of `key`, opened read-write and its header mapped; undefined when missing and not `create`. */
  open(key: string, create = true): LockFile | undefined {
    const l = this.locks;
    const path = this.pathOf(key);
    const opened = this.openChecked(path, create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR, key);
    if (opened === undefined) return undefined;
    const [fd, st] = opened;
    try {
      return { fd, path, ino: st.ino, header: l.map(fd), size: 0, aux: undefined };
    } catch (error) {
      closeSync(fd);
      throw diskFull(error, key);
    }
  }

  shut(file: LockFile): void {
    this.locks.unmap(file.header);
    closeSync(file.fd);
    for (const fd of file.aux?.values() ?? []) closeSync(fd);
    file.aux = undefined;
  }

  /** Whether `file` still is the file at its path (a releaser may have unlinked it). */
  current(file: LockFile): boolean {
    return lstatSync(file.path, { throwIfNoEntry: false })?.ino === file.ino;
  }
}
