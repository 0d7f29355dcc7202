// Local locks held by the kernel: one file per lock name, locked through open file descriptions
// (Linux OFD byte-range locks, or flock(2) in the portable build). The kernel drops a lock the moment
// its holder's file is closed, so a crashed holder frees the lock at once, with no TTL to wait out.
// Several processes (and several backends in one process: each lease has its own open file) exclude
// each other on the same host.
//
// Byte ranges (locks are advisory and independent of the file's content):
//   MAIN    exclusive holders lock it for writing, readers and semaphore permits for reading
//   INTENT  writers waiting under writer preference hold a read lock; such readers probe it
//   META    a short exclusive lock around shared holders' updates of the header and their records
//   WAITERS waiters hold a read lock while subscribed, so a release knows whether to wake anyone
//   SLOTS   semaphore permit i holds an exclusive lock on SLOTS + i
// Content: the first page is a header (native/header.h), mapped by every holder: the fence counter and the exclusive holder's
// record (owner, fence, expiry, pid). After the page, shared holders' records (records.ts).
//
// Modules: lockfile.ts opens files safely (directory.ts: where), ranges.ts maps ranges onto the
// locking path, records.ts keeps shared holders' records, spares.ts parks and sweeps released
// files, watch.ts wakes waiters.

import { closeSync } from 'node:fs';
import type { AcquireRequest, AcquireResult, LockBackend, LockInfo, LeaseMode } from '../../backend.js';
import { defaultDir } from './directory.js';
import { Files, diskFull, type LockFile } from './lockfile.js';
import { EXCLUSIVE, INTENT, MAIN, SHARED, SLOTS, UNLOCK } from './native.js';
import { checkName } from './names.js';
import { checkOptions, type FileBackendOptions } from './options.js';
import { FilePools } from './pools.js';
import { Ranges } from './ranges.js';
import { FileRates } from './rate.js';
import { holder, live, withMeta, write } from './records.js';
import { Spares } from './spares.js';
import { Watchers } from './watch.js';
import { plainBackend } from '../shared/plain.js';

export { fileNameFor } from './names.js';
export type { FileBackendOptions } from './options.js';

interface Held {
  file: LockFile;
  mode: LeaseMode;
  fence: bigint;
  timer: NodeJS.Timeout | undefined;
}

class FileBackend implements LockBackend {
  readonly name = 'file';
  readonly capabilities = { shared: true, wake: true, fencing: true, expiry: 'ttl' } as const;
  readonly pools: FilePools;
  readonly #files: Files;
  readonly #ranges: Ranges;
  readonly #spares: Spares;
  readonly #watchers: Watchers;
  readonly #poll: number;
  /** Leases and announced intents, by owner and key (ids, never property names). */
  readonly #leases = new Map<string, Held>();
  readonly #intents = new Map<string, number>();
  readonly rate: FileRates;

  constructor(options: FileBackendOptions | undefined) {
    const o = checkOptions(options);
    this.#files = new Files(o.dir ?? defaultDir(), o.mode, o.dir === undefined);
    this.pools = new FilePools(this.#files);
    this.#ranges = new Ranges(this.#files);
    this.#spares = new Spares(this.#files, this.#ranges, o.linger);
    this.#watchers = new Watchers(this.#files, o.linger);
    this.#poll = o.poll;
    this.rate = new FileRates(this.#files);
  }

  #id(key: string, owner: string): string {
    return `${owner.length}:${owner}\u0000${key}`;
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    checkName(req.key);
    const l = this.#files.locks;
    const mine = this.#leases.get(this.#id(req.key, req.owner));
    if (mine) {
      if (mine.mode !== req.mode) return { granted: false };
      this.#arm(req.key, req.owner, mine, req.ttl);
      return { granted: true, fence: mine.fence };
    }
    for (;;) {
      const file = this.#spares.take(req.key) ?? this.#files.open(req.key)!;
      let fence: bigint | false | null;
      try {
        fence =
          req.mode === 'exclusive'
            ? l.grant(file.fd, file.header, file.path, file.ino, req.owner, Date.now() + req.ttl)
            : await this.#share(file, req);
      } catch (error) {
        this.#spares.park(req.key, file); // dropping whatever it got so far
        throw diskFull(error, req.key);
      }
      if (fence === null) {
        this.#files.shut(file); // locked a file a sweeper just unlinked: try the one at the path now
        continue;
      }
      if (fence === false) {
        this.#spares.park(req.key, file, true); // a refused attempt is left holding nothing
        if (req.mode === 'exclusive' && req.intent) this.#announce(req.key, req.owner);
        return { granted: false, retryAfter: this.#poll };
      }
      this.#withdraw(req.key, req.owner);
      const held: Held = { file, mode: req.mode, fence, timer: undefined };
      this.#leases.set(this.#id(req.key, req.owner), held);
      this.#arm(req.key, req.owner, held, req.ttl);
      return { granted: true, fence };
    }
  }

  #takeShared(file: LockFile, req: AcquireRequest): boolean {
    const l = this.#files.locks;
    if (req.writerPreference && this.#ranges.probe(file, EXCLUSIVE, INTENT) !== 0) return false;
    if (!l.lock(file.fd, SHARED, MAIN, 1)) return false;
    if (req.limit === undefined) return true;
    for (let slot = 0; slot < req.limit; slot++) if (this.#ranges.lock(file, EXCLUSIVE, SLOTS + slot)) return true;
    l.lock(file.fd, UNLOCK, MAIN, 1);
    return false;
  }

  /** A shared grant: the fence, false when refused, null when the file is no longer at its path. */
  async #share(file: LockFile, req: AcquireRequest): Promise<bigint | false | null> {
    if (!this.#takeShared(file, req)) return false;
    if (!this.#files.current(file)) return null;
    return withMeta(this.#ranges, req.key, file, (records) => {
      // Records of holders that died without releasing, or that an exclusive grant outlived, go here.
      const kept = live(this.#files, file, records);
      const fence = this.#files.locks.next(file.fd, file.header);
      kept.set(req.owner, { fence, expiresAt: Date.now() + req.ttl, pid: process.pid });
      write(file, kept, req.key);
      return fence;
    });
  }

  #announce(key: string, owner: string): void {
    const k = this.#id(key, owner);
    if (this.#intents.has(k)) return;
    const fd = this.#ranges.announce(key);
    if (fd !== undefined) this.#intents.set(k, fd);
  }

  #withdraw(key: string, owner: string): void {
    const k = this.#id(key, owner);
    const fd = this.#intents.get(k);
    if (fd === undefined) return;
    this.#intents.delete(k);
    closeSync(fd);
  }

  /** Ends a lease: a reader's record removed, its locks dropped (waking waiters), its file parked. */
  async #end(key: string, owner: string, held: Held): Promise<void> {
    this.#leases.delete(this.#id(key, owner));
    if (held.timer) clearTimeout(held.timer);
    const { file } = held;
    try {
      // An exclusive holder's record needs no removal: inspect() ignores it while MAIN is free, and
      // the next exclusive holder replaces it. A reader's goes, as other readers may remain.
      if (held.mode === 'shared') {
        await withMeta(this.#ranges, key, file, (records = new Map()) => {
          records.delete(owner);
          write(file, records, key);
        });
      }
    } finally {
      this.#unlock(key, file);
    }
  }

  /** Drops a lease's locks, waking waiters, and parks its file. */
  #unlock(key: string, file: LockFile): void {
    try {
      this.#files.locks.release(file.fd);
      this.#ranges.unlockAux(file);
    } catch (error) {
      this.#files.shut(file); // closing drops the locks all the same
      throw error;
    }
    this.#spares.park(key, file, true);
  }

  /** The ttl is kept by the holding process: a lease not extended in time is ended here. */
  #arm(key: string, owner: string, held: Held, ttl: number): void {
    if (held.timer) clearTimeout(held.timer);
    held.timer = setTimeout(() => {
      if (this.#leases.get(this.#id(key, owner)) === held) this.#end(key, owner, held).catch(() => undefined);
    }, ttl);
    held.timer.unref();
  }

  async extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const held = this.#leases.get(this.#id(key, owner));
    // Someone deleting the lock file by hand would let a newcomer lock a fresh file: that is a loss.
    if (!held || !this.#files.current(held.file)) return false;
    this.#arm(key, owner, held, ttl);
    const { file } = held;
    try {
      if (held.mode === 'exclusive') this.#files.locks.renew(file.fd, file.header, Date.now() + ttl);
      else {
        await withMeta(this.#ranges, key, file, (records) => {
          const record = records?.get(owner);
          if (!records || !record) return;
          record.expiresAt = Date.now() + ttl;
          write(file, records, key);
        });
      }
    } catch (error) {
      throw diskFull(error, key);
    }
    return true;
  }

  async release(key: string, owner: string): Promise<boolean> {
    this.#withdraw(key, owner);
    const held = this.#leases.get(this.#id(key, owner));
    if (!held) return false;
    await this.#end(key, owner, held);
    return true;
  }

  async inspect(key: string): Promise<LockInfo | null> {
    checkName(key);
    const file = this.#spares.take(key) ?? this.#files.open(key, false);
    if (!file) return null;
    try {
      const held = this.#files.locks.probe(file.fd, EXCLUSIVE, MAIN, 1);
      if (held === 0) return null;
      if (held === EXCLUSIVE) {
        const r = holder(this.#files, file);
        return { key, mode: 'exclusive', holders: r ? [{ owner: r[0], fence: r[1], expiresAt: r[2] }] : [] };
      }
      const records = live(this.#files, file, await withMeta(this.#ranges, key, file, (c) => c));
      return { key, mode: 'shared', holders: [...records].map(([owner, r]) => ({ owner, fence: r.fence, expiresAt: r.expiresAt })) };
    } finally {
      this.#spares.park(key, file);
    }
  }

  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        signal.removeEventListener('abort', done);
        this.#watchers.unsubscribe(key, done);
        resolve();
      };
      // No file: the key is free now. A watch that cannot be set up (no inotify, or no instances or
      // watches left) throws, and the waiter falls back to polling instead of spinning.
      if (!this.#watchers.subscribe(key, done)) return resolve();
      signal.addEventListener('abort', done, { once: true });
    });
  }

  close(): Promise<void> {
    for (const [k, held] of [...this.#leases]) {
      this.#leases.delete(k);
      if (held.timer) clearTimeout(held.timer);
      this.#files.shut(held.file); // the kernel drops its locks; its record is pruned by the next holder
    }
    for (const fd of this.#intents.values()) closeSync(fd);
    this.#intents.clear();
    this.#watchers.close();
    this.#spares.close();
    return Promise.resolve();
  }
}

export function fileBackend(options?: FileBackendOptions): LockBackend {
  return plainBackend(new FileBackend(options));
}
