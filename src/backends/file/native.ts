// Loads the native addon (native/file.c): locks that belong to an open file, the lock file's mapped header,
// and inotify watches read on the event loop. Loaded on first use through node-gyp-build (a prebuilt
// binary in prebuilds/, else the one built at install), so a missing addon only affects the file
// backend, with a message that says why and what to do.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { LockAcquisitionError } from '../../errors.js';
import { here } from './locate.js';

// Byte ranges of a lock file (what each is for: src/backends/file/index.ts); native/file.c knows MAIN
// and WAITERS too. The flock build keeps every range but MAIN in a file of its own (ranges.ts).
export const MAIN = 0;
export const INTENT = 1;
export const META = 2;
export const WAITERS = 3;
export const SLOTS = 16;

export const UNLOCK = 0;
export const SHARED = 1;
export const EXCLUSIVE = 2;

/** The lock file's first page, mapped shared: fence counter and exclusive holder's record. */
export type Header = { readonly __brand: 'Header' };

export interface FileLocks {
  /** The locking path it was built with: byte ranges (Linux) or whole-file flock(2) (portable). */
  readonly kind: 'ofd' | 'flock';
  /** Whether watch() works (inotify); without it waiters poll. */
  readonly watches: boolean;
  /** true when set, false when another open file holds a conflicting lock. */
  lock(fd: number, type: 0 | 1 | 2, start: number, len: number): boolean;
  /** 0 when a lock of `type` could be set now, else the conflicting lock's type. */
  probe(fd: number, type: 1 | 2, start: number, len: number): 0 | 1 | 2;
  /**
   * Maps the header page of this open file, allocating it first (ENOSPC / EDQUOT when the disk or
   * quota is full). Touches of the page are guarded: a file truncated under it is an error, not SIGBUS.
   */
  map(fd: number): Header;
  unmap(header: Header): void;
  /**
   * The whole exclusive acquisition: the fence, false when another open file holds the lock, null
   * when this file is no longer the one at `path` (reopen). Holds MAIN only when it returns a fence.
   */
  grant(fd: number, header: Header, path: string, ino: number, owner: string, expiresAt: number): bigint | false | null;
  /** The next fence, for a shared holder under META. */
  next(fd: number, header: Header): bigint;
  /** The exclusive holder's new expiry. */
  renew(fd: number, header: Header, expiresAt: number): void;
  /** The last exclusive holder's record, or null (none, or it kept changing while read). */
  holder(header: Header): [owner: string, fence: bigint, expiresAt: number, pid: number] | null;
  /** Drops every lock this open file holds and wakes waiters; true when it touched the file. */
  release(fd: number): boolean;
  /** Use watchFile() (watch.ts) instead: one listener gets the events of every watch. */
  watch(path: string, listener: (wd: number, mask: number) => void): number;
  unwatch(wd: number): void;
}

/** The backends that work where the file backend does not. */
export const ELSEWHERE = 'the memory, redis, redlock, postgres or etcd backend';

let loaded: FileLocks | undefined;

/** The addon, loaded once per process (ESM and CJS copies of this module share node's require cache). */
export function native(): FileLocks {
  if (loaded) return loaded;
  // src/backends/file or dist/{esm,cjs}/backends/file: the package root is 3 or 4 levels up.
  const require = createRequire(join(here, 'native.js'));
  const roots = [3, 4].map((up) => join(here, ...Array<string>(up).fill('..')));
  const root = roots.find((r) => {
    try {
      return (require(join(r, 'package.json')) as { name?: string }).name !== undefined;
    } catch {
      return false;
    }
  });
  let addon: Partial<FileLocks>;
  try {
    const load = require('node-gyp-build') as (dir: string) => unknown;
    addon = load(root ?? roots[0]!) as Partial<FileLocks>;
  } catch (error) {
    throw new LockAcquisitionError(
      `the file backend's native addon is not available for ${process.platform}-${process.arch} (no prebuilt binary, and it was not built from source: that needs python3, make and a C compiler at install). Install those and run \`npm rebuild fencelock\`, reading its output, or use ${ELSEWHERE}`,
      { cause: error },
    );
  }
  if (typeof addon.map !== 'function' || typeof addon.kind !== 'string') {
    throw new LockAcquisitionError("the file backend's native addon is from an older version; run `npm rebuild fencelock`");
  }
  loaded = addon as FileLocks;
  return loaded;
}
