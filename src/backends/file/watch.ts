// Waking waiters: one inotify watch per lock name for all of a backend's waiters, registered as a
// read lock on WAITERS so that a release knows whether to touch the file (the event they wake on).

import { closeSync, constants, fstatSync } from 'node:fs';
import { SHARED, WAITERS, native, type FileLocks } from './native.js';
import type { Files } from './lockfile.js';

// inotify event bits (<sys/inotify.h>).
const IN_ATTRIB = 0x4;
/** The watched file was deleted or moved away, or the watch ended. */
const IN_GONE = 0x400 | 0x800 | 0x8000;
const IN_IGNORED = 0x8000;

type Change = (mask: number) => void;

/** Listeners per watch descriptor. Kept on the addon object, which an ESM and a CJS copy of this module share. */
type Registry = Map<number, Set<Change>>;
const REGISTRY = Symbol.for('locksmith.file.watches');

function registry(l: FileLocks): Registry {
  const holder = l as FileLocks & { [REGISTRY]?: Registry };
  return (holder[REGISTRY] ??= new Map<number, Set<Change>>());
}

function dispatch(this: void, wd: number, mask: number): void {
  const watches = registry(native());
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
 * Watches the file at `path` for the events that can free a lock (see native/watch.h). Every watch
 * of one file in this process shares a descriptor, so listeners are counted here.
 */
function watchFile(path: string, listener: Change): number {
  const l = native();
  const wd = l.watch(path, dispatch);
  const watches = registry(l);
  let set = watches.get(wd);
  if (!set) watches.set(wd, (set = new Set()));
  set.add(listener);
  return wd;
}

function unwatchFile(wd: number, listener: Change): void {
  const l = native();
  const watches = registry(l);
  const set = watches.get(wd);
  if (!set?.delete(listener) || set.size > 0) return;
  watches.delete(wd);
  l.unwatch(wd);
}

interface Watched {
  /** Holds the read lock on WAITERS. */
  fd: number;
  wd: number;
  change: Change;
  listeners: Set<() => void>;
  timer: NodeJS.Timeout | undefined;
}

/** A backend's watchers, one per name, kept `linger` ms after the last waiter leaves. */
export class Watchers {
  readonly #watched = new Map<string, Watched>();
  constructor(
    private readonly files: Files,
    private readonly linger: number,
  ) {}

  /**
   * Registers `listener` for `key`'s next change; false when there is no file (the key is free). The
   * registration (the lock, then the watch) happens before the caller's next attempt: a release
   * either sees us or came before that attempt. It wakes on a release's touch and on any close of the
   * file opened for writing, which is what a holder that crashed looks like (the kernel closes its
   * files), so no poll is needed for that. Throws when no watch can be set up: the waiter then polls.
   */
  subscribe(key: string, listener: () => void): boolean {
    let entry = this.#watched.get(key);
    if (!entry) {
      const path = this.files.pathOf(key);
      // Read-only: closing it later must not look like a holder going away to other waiters.
      const fd = this.files.openChecked(path, constants.O_RDONLY)?.[0];
      if (fd === undefined) return false;
      try {
        entry = this.#watch(key, path, fd);
      } catch (error) {
        closeSync(fd);
        throw error;
      }
    }
    entry.listeners.add(listener);
    return true;
  }

  #watch(key: string, path: string, fd: number): Watched {
    const l = native();
    if (l.kind === 'ofd') l.lock(fd, SHARED, WAITERS, 1); // flock: every release touches
    const created: Watched = { fd, wd: -1, change: () => undefined, listeners: new Set(), timer: undefined };
    created.change = (mask) => {
      if (this.#watched.get(key) !== created) return;
      // Every waiter is woken even if the lock is already taken again when this event is read: a
      // waiter that skipped those would lose every race to a holder that re-acquires at once, and
      // other processes would starve (measured: handoffs to them all but stopped).
      for (const wake of [...created.listeners]) wake();
      // Unlinked (a sweep: the link count drops while our descriptor keeps the inode alive), moved
      // or deleted: nobody uses this file any more, so the next waiter must watch the new one.
      if (mask & IN_GONE || (mask & IN_ATTRIB && fstatSync(created.fd).nlink === 0)) this.#retire(key, created);
    };
    created.wd = watchFile(path, created.change);
    this.#watched.set(key, created);
    return created;
  }

  unsubscribe(key: string, listener: () => void): void {
    const entry = this.#watched.get(key);
    if (!entry?.listeners.delete(listener) || entry.listeners.size > 0) return;
    // One timer per watcher, re-armed instead of remade: a contended name's set empties every round.
    if (entry.timer) return void entry.timer.refresh();
    entry.timer = setTimeout(() => {
      if (entry.listeners.size === 0) this.#retire(key, entry);
    }, this.linger);
    entry.timer.unref();
  }

  #retire(key: string, entry: Watched): void {
    if (this.#watched.get(key) !== entry) return;
    this.#watched.delete(key);
    if (entry.timer) clearTimeout(entry.timer);
    unwatchFile(entry.wd, entry.change);
    closeSync(entry.fd);
  }

  /** Wakes every waiter and drops every watch (close()). */
  close(): void {
    for (const [key, entry] of [...this.#watched]) {
      for (const wake of [...entry.listeners]) wake();
      this.#retire(key, entry);
    }
  }
}
