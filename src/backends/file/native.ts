// Loads the native addon (native/ofd.c): open file description locks, the lock file's mapped header,
// and inotify watches read on the event loop. Loaded on first use, so a failed build only affects the
// file backend, with a message that says what to do.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { LockAcquisitionError } from '../../errors.js';
import { here } from './locate.js';

// Byte ranges of a lock file (what each is for: src/backends/file/index.ts); native/ofd.c knows MAIN
// and WAITERS too.
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

export interface OfdLocks {
  /** true when set, false when another open file holds a conflicting lock. */
  lock(fd: number, type: 0 | 1 | 2, start: number, len: number): boolean;
  /** 0 when a lock of `type` could be set now, else the conflicting lock's type. */
  probe(fd: number, type: 1 | 2, start: number, len: number): 0 | 1 | 2;
  /** Maps the header page of this open file (growing a shorter file to one page). */
  map(fd: number): Header;
  unmap(header: Header): void;
  /**
   * The whole exclusive acquisition: the fence, false when another open file holds the lock, null
   * when this file is no longer the one at `path` (reopen). Holds MAIN only when it returns a fence.
   */
  grant(fd: number, header: Header, path: string, ino: number, owner: string, expiresAt: number): bigint | false | null;
  /** The next fence, for a shared holder under META. */
  next(header: Header): bigint;
  /** The exclusive holder's new expiry. */
  renew(header: Header, expiresAt: number): void;
  /** The last exclusive holder's record, or null (none, or it kept changing while read). */
  holder(header: Header): [owner: string, fence: bigint, expiresAt: number, pid: number] | null;
  /** Drops every range this open file holds and wakes registered waiters; true when it woke them. */
  release(fd: number): boolean;
  /** Use watchFile() instead: one listener gets the events of every watch. */
  watch(path: string, listener: (wd: number, mask: number) => void): number;
  unwatch(wd: number): void;
}

// inotify event bits (<sys/inotify.h>).
export const IN_ATTRIB = 0x4;
/** The watched file was deleted or moved away, or the watch ended. */
export const IN_GONE = 0x400 | 0x800 | 0x8000;
const IN_IGNORED = 0x8000;

export type Change = (mask: number) => void;

/** Listeners per watch descriptor. Kept on the addon object, which an ESM and a CJS copy of this module share. */
type Registry = Map<number, Set<Change>>;
const REGISTRY = Symbol.for('locksmith.file.watches');

let loaded: OfdLocks | undefined;

export function ofd(): OfdLocks {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    throw new LockAcquisitionError(`the file backend needs Linux open file description locks; this is ${process.platform}`);
  }
  // src/backends/file or dist/{esm,cjs}/backends/file: the package root is 3 or 4 levels up.
  const candidates = [3, 4].map((up) => join(here, ...Array<string>(up).fill('..'), 'build/Release/locksmith_ofd.node'));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new LockAcquisitionError(
      'the file backend needs its native addon, which was not built (it builds on install with node-gyp, python3, make and a C compiler); run `npm rebuild locksmith` and read its output',
    );
  }
  const require = createRequire(join(here, 'native.js'));
  const addon = require(found) as Partial<OfdLocks>;
  if (typeof addon.grant !== 'function') {
    throw new LockAcquisitionError(`the file backend's native addon at ${found} is from an older version; run \`npm rebuild locksmith\``);
  }
  loaded = addon as OfdLocks;
  return loaded;
}

function registry(l: OfdLocks): Registry {
  const holder = l as OfdLocks & { [REGISTRY]?: Registry };
  return (holder[REGISTRY] ??= new Map<number, Set<Change>>());
}

function dispatch(this: void, wd: number, mask: number): void {
  const watches = registry(ofd());
  // wd -1: the kernel's queue overflowed and events were lost, so every watcher hears of it.
  const sets = wd === -1 ? [...watches.values()] : [watches.get(wd)];
  if (mask & IN_IGNORED) watches.delete(wd);
  for (const set of sets) {
    for (const listener of [...(set ?? [])]) {
      try {
        listener(mask);
      } catch {
        // A listener only wakes waiters; it must not take the others down with it.
      }
    }
  }
}

/**
 * Watches the file at `path` for the events that can free a lock (see native/ofd.c). Every watch
 * of one file in this process shares a descriptor, so listeners are counted here.
 */
export function watchFile(path: string, listener: Change): number {
  const l = ofd();
  const wd = l.watch(path, dispatch);
  const watches = registry(l);
  let set = watches.get(wd);
  if (!set) watches.set(wd, (set = new Set()));
  set.add(listener);
  return wd;
}

export function unwatchFile(wd: number, listener: Change): void {
  const l = ofd();
  const watches = registry(l);
  const set = watches.get(wd);
  if (!set?.delete(listener) || set.size > 0) return;
  watches.delete(wd);
  l.unwatch(wd);
}
