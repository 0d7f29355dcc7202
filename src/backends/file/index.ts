// Local locks held by the kernel: one file per lock name, with open file description (OFD) byte-range
// locks on it. The kernel drops a lock the moment its holder's file is closed, so a crashed holder
// frees the lock at once, with no TTL to wait out. Several processes (and several backends in one
// process: each lease has its own open file) exclude each other on the same host.
//
// Byte ranges (locks are advisory and independent of the file's content):
//   MAIN    exclusive holders lock it for writing, readers and semaphore permits for reading
//   INTENT  writers waiting under writer preference hold a read lock; such readers probe it
//   META    a short exclusive lock around shared holders' updates of the header and their records
//   WAITERS waiters hold a read lock while subscribed, so a release knows whether to wake anyone
//   SLOTS   semaphore permit i holds an exclusive lock on SLOTS + i
// Content: the first page is a header that every holder maps (native/ofd.c): the fence counter and
// the exclusive holder's record (owner, fence, expiry, pid). An exclusive grant or release is one
// native call and writes no content through write(2), so watchers see no change event but the
// release's wake-up. After the page, JSON with one record per shared holder, for inspect().

import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AcquireRequest, AcquireResult, LeaseHolder, LockBackend, LockInfo, LeaseMode } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { sleep } from '../../core/time.js';
import { msOption } from '../shared/checks.js';
import { EXCLUSIVE, IN_ATTRIB, IN_GONE, INTENT, MAIN, META, SHARED, SLOTS, UNLOCK, WAITERS, ofd, unwatchFile, watchFile, type Change, type Header, type OfdLocks } from './native.js';

/** Where shared holders' records start: after the header page. */
const RECORDS = 4096;

/** How long to keep trying for META before giving up: it is only held for a read and a write. */
const META_PATIENCE_MS = 2_000;

export interface FileBackendOptions {
  /** Where lock files live (created if missing). Default: <os tmpdir>/locksmith. */
  dir?: string;
  /**
   * How often a refused waiter retries, in ms (default 25). Releases, and holders that die (the
   * kernel closes their files), wake waiters through inotify at once; the poll is only a net for a
   * wake-up that never comes (say, a holder on another machine sharing the directory over NFS).
   */
  poll?: number;
  /**
   * How long a released lock file stays open for reuse before it is removed, in ms (default 1000;
   * 0 removes it at release). Keeps a busy name from being re-created on every acquisition.
   */
  linger?: number;
}

/** A shared holder's record. */
interface Record {
  fence: string;
  expiresAt: number;
  pid: number;
}

type Records = { [owner: string]: Record };

interface LockFile {
  fd: number;
  path: string;
  /** Fixed for the life of the descriptor: tells whether the path still names this file. */
  ino: number;
  header: Header;
  /** The records' size as last read or written. */
  size: number;
}

interface Watched {
  /** Holds the read lock on WAITERS. */
  fd: number;
  wd: number;
  change: Change;
  listeners: Set<() => void>;
  timer: NodeJS.Timeout | undefined;
}

interface Spares {
  files: LockFile[];
  timer: NodeJS.Timeout;
}

interface Held {
  file: LockFile;
  mode: LeaseMode;
  fence: bigint;
  timer: NodeJS.Timeout | undefined;
}

/** A file name for a lock name: safe on any filesystem, no path traversal, stable across processes. */
export function fileNameFor(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `%${byte.toString(16).padStart(2, '0')}`;
  }
  // Keep well under the usual 255-byte name limit; a hash keeps long names distinct.
  if (out.length > 180) out = `${out.slice(0, 100)}~${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
  return `${out}.lock`;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function fileBackend(options?: FileBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['dir', 'poll', 'linger'], 'fileBackend()');
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.dir.length === 0 || o.dir.includes('\0'))) {
    throw new LockArgumentError('fileBackend(): dir must be a non-empty path');
  }
  const poll = msOption('fileBackend()', 'poll', o.poll, 25, 1, 60_000);
  const linger = msOption('fileBackend()', 'linger', o.linger, 1_000, 0, 3_600_000);
  const dir = o.dir ?? join(tmpdir(), 'locksmith');
  const idle = new Map<string, Spares>();
  const watchers = new Map<string, Watched>();
  let native: OfdLocks | undefined;
  const leases = new Map<string, Held>();
  const intents = new Map<string, number>();
  const id = (key: string, owner: string): string => `${owner.length}:${owner}\u0000${key}`;
  const pathOf = (key: string): string => join(dir, fileNameFor(key));
  let made = false;

  function locks(): OfdLocks {
    native ??= ofd();
    if (!made) {
      mkdirSync(dir, { recursive: true });
      made = true;
    }
    return native;
  }

  function plainOpen(path: string, create: boolean): number {
    return openSync(path, create ? constants.O_RDWR | constants.O_CREAT : constants.O_RDWR, 0o666);
  }

  /** The lock file at `key`'s path, opened and its header mapped; created unless `create` is false. */
  function open(key: string, create = true): LockFile {
    const path = pathOf(key);
    const fd = plainOpen(path, create);
    try {
      return { fd, path, ino: fstatSync(fd).ino, header: locks().map(fd), size: 0 };
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  function shut(file: LockFile): void {
    locks().unmap(file.header);
    closeSync(file.fd);
  }

  let scratch = Buffer.alloc(4096);

  /** Shared holders' records, or undefined when they do not parse (a write in progress, seen by inspect). */
  function read(file: LockFile): Records | undefined {
    // Read until a short read instead of asking fstat for the size: one call fewer per acquisition.
    let size = 0;
    for (;;) {
      if (size === scratch.length) scratch = Buffer.concat([scratch, Buffer.alloc(scratch.length)]);
      const n = readSync(file.fd, scratch, size, scratch.length - size, RECORDS + size);
      size += n;
      if (n === 0 || size < scratch.length) break;
    }
    file.size = size;
    if (size === 0) return {};
    try {
      return JSON.parse(scratch.toString('utf8', 0, size)) as Records;
    } catch {
      return undefined;
    }
  }

  /** Call only after read() under META, so the known size is current. */
  function write(file: LockFile, records: Records): void {
    // Overwrite in place, padding with spaces (valid trailing JSON whitespace) instead of truncating:
    // on ext4 a truncate-then-write makes close() flush the file (auto_da_alloc), ~10× the cost, and
    // a truncation would cut the header page that every holder has mapped.
    const text = Buffer.from(JSON.stringify(records));
    const buf = text.length < file.size ? Buffer.concat([text, Buffer.alloc(file.size - text.length, 0x20)]) : text;
    writeSync(file.fd, buf, 0, buf.length, RECORDS);
    file.size = buf.length;
  }

  /** Runs `fn` on the shared holders' records under META. */
  async function withMeta<T>(key: string, file: LockFile, fn: (records: Records | undefined) => T): Promise<T> {
    const l = locks();
    const start = performance.now();
    while (!l.lock(file.fd, EXCLUSIVE, META, 1)) {
      if (performance.now() - start > META_PATIENCE_MS) {
        throw new LockAcquisitionError(`"${key}": the lock file's metadata stayed locked for ${META_PATIENCE_MS} ms (a holder paused mid-update?)`, { key });
      }
      await sleep(1);
    }
    try {
      return fn(read(file));
    } finally {
      l.lock(file.fd, UNLOCK, META, 1);
    }
  }

  /** Whether `file` still is the file at its path (a releaser may have unlinked it). */
  function current(file: LockFile): boolean {
    return statSync(file.path, { throwIfNoEntry: false })?.ino === file.ino;
  }

  /** Shared records still live: not older than the last exclusive grant, and of a live process. */
  function live(file: LockFile, records: Records | undefined): [string, Record][] {
    const floor = locks().holder(file.header)?.[1] ?? 0n;
    return Object.entries(records ?? {}).filter(([, r]) => BigInt(r.fence) > floor && alive(r.pid));
  }

  function takeShared(l: OfdLocks, fd: number, req: AcquireRequest): boolean {
    if (req.writerPreference && l.probe(fd, EXCLUSIVE, INTENT, 1) !== 0) return false;
    if (!l.lock(fd, SHARED, MAIN, 1)) return false;
    if (req.limit === undefined) return true;
    for (let slot = 0; slot < req.limit; slot++) if (l.lock(fd, EXCLUSIVE, SLOTS + slot, 1)) return true;
    l.lock(fd, UNLOCK, MAIN, 1);
    return false;
  }

  function announce(key: string, owner: string): void {
    const k = id(key, owner);
    if (intents.has(k)) return;
    const fd = plainOpen(pathOf(key), true);
    if (locks().lock(fd, SHARED, INTENT, 1)) intents.set(k, fd);
    else closeSync(fd);
  }

  function withdraw(key: string, owner: string): boolean {
    const k = id(key, owner);
    const fd = intents.get(k);
    if (fd === undefined) return false;
    intents.delete(k);
    closeSync(fd);
    return true;
  }

  /** Ends a lease: a reader's record removed, its locks dropped (waking waiters), its file parked. */
  async function end(key: string, owner: string, held: Held): Promise<void> {
    leases.delete(id(key, owner));
    if (held.timer) clearTimeout(held.timer);
    const { file } = held;
    try {
      // An exclusive holder's record needs no removal: inspect() ignores it while MAIN is free, and
      // the next exclusive holder replaces it. A reader's goes, as other readers may remain.
      if (held.mode === 'shared') {
        await withMeta(key, file, (records = {}) => {
          delete records[owner];
          write(file, records);
        });
      }
    } finally {
      unlock(key, file);
    }
  }

  /** Drops a lease's locks, waking waiters, and parks its file. */
  function unlock(key: string, file: LockFile): void {
    try {
      locks().release(file.fd);
    } catch (error) {
      shut(file); // closing drops the locks all the same
      throw error;
    }
    park(key, file, true);
  }

  /** An open lock file for `key`: a parked one if there is one (saves an open, a map and a create). */
  function openFor(key: string): LockFile {
    return idle.get(key)?.files.pop() ?? open(key);
  }

  /**
   * Keeps a released file open for `linger` ms, so a name used again soon costs no open and no
   * re-create, then cleans it up (sweep). Every file parked while the name is busy is kept until then:
   * closing one at once would be a change event (IN_CLOSE_WRITE) that wakes every waiter, whose
   * attempts would park and close files of their own, and so on.
   */
  function park(key: string, file: LockFile, unlocked = false): void {
    if (!unlocked) locks().lock(file.fd, UNLOCK, 0, 0); // length 0: every range this open file holds
    if (linger === 0) return sweep(key, file);
    let spares = idle.get(key);
    if (spares) {
      // Only a name left idle for `linger` is swept: sweeping a busy one would make every waiter's
      // watcher watch a deleted file. refresh() re-arms the one timer instead of making a new one.
      spares.timer.refresh();
    } else {
      const created: Spares = { files: [], timer: setTimeout(() => expire(key, created), linger) };
      created.timer.unref();
      idle.set(key, (spares = created));
    }
    spares.files.push(file);
  }

  function expire(key: string, spares: Spares): void {
    if (idle.get(key) !== spares) return;
    idle.delete(key);
    const [first, ...rest] = spares.files;
    for (const file of rest) shut(file);
    if (first) sweep(key, first);
  }

  /**
   * Removes a lock file nobody holds. Race-free because it happens while we hold MAIN exclusively: an
   * acquirer that opened the old file and locks it afterwards sees a different inode at the path and
   * retries on the new file. The fence counter goes with the file; the next file reseeds it from the
   * clock, so fences still only increase.
   */
  function sweep(key: string, file: LockFile): void {
    try {
      if (locks().lock(file.fd, EXCLUSIVE, MAIN, 1) && current(file)) unlinkSync(file.path);
    } catch {
      // Cleanup is best effort: a file left behind is reused by the next acquisition.
    } finally {
      shut(file);
    }
  }

  async function acquire(req: AcquireRequest): Promise<AcquireResult> {
    const l = locks();
    const k = id(req.key, req.owner);
    const mine = leases.get(k);
    if (mine) {
      if (mine.mode !== req.mode) return { granted: false };
      arm(req.key, req.owner, mine, req.ttl);
      return { granted: true, fence: mine.fence };
    }
    for (;;) {
      const file = openFor(req.key);
      let fence: bigint | false | null;
      try {
        fence = req.mode === 'exclusive' ? l.grant(file.fd, file.header, file.path, file.ino, req.owner, Date.now() + req.ttl) : await share(l, file, req);
      } catch (error) {
        park(req.key, file); // dropping whatever it got so far
        throw error;
      }
      if (fence === null) {
        shut(file); // locked a file a sweeper just unlinked: try the one at the path now
        continue;
      }
      if (fence === false) {
        park(req.key, file, true); // a refused attempt is left holding nothing
        if (req.mode === 'exclusive' && req.intent) announce(req.key, req.owner);
        return { granted: false, retryAfter: poll };
      }
      withdraw(req.key, req.owner);
      const held: Held = { file, mode: req.mode, fence, timer: undefined };
      leases.set(k, held);
      arm(req.key, req.owner, held, req.ttl);
      return { granted: true, fence };
    }
  }

  /** A shared grant: the fence, false when refused, null when the file is no longer at its path. */
  async function share(l: OfdLocks, file: LockFile, req: AcquireRequest): Promise<bigint | false | null> {
    if (!takeShared(l, file.fd, req)) return false;
    if (!current(file)) return null;
    return withMeta(req.key, file, (records) => {
      // Records of holders that died without releasing, or that an exclusive grant outlived, go here.
      const kept: Records = Object.fromEntries(live(file, records));
      const fence = l.next(file.header);
      kept[req.owner] = { fence: fence.toString(), expiresAt: Date.now() + req.ttl, pid: process.pid };
      write(file, kept);
      return fence;
    });
  }

  /**
   * One watcher per name for all of this backend's waiters, kept a moment after the last one leaves
   * (a contended name is waited on again right away). While it exists it holds a read lock on
   * WAITERS, which is how a releaser knows to touch the file. Registering (the lock, then the watch)
   * happens before the caller's next attempt: a release either sees us or came before that attempt.
   * It wakes on a release's touch and on any close of the file opened for writing, which is what a
   * holder that crashed looks like (the kernel closes its files), so no poll is needed for that.
   */
  function subscribe(key: string, listener: () => void): boolean {
    let entry = watchers.get(key);
    if (!entry) {
      const path = pathOf(key);
      let fd: number;
      try {
        // Read-only: closing it later must not look like a holder going away to other waiters.
        fd = openSync(path, constants.O_RDONLY);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw error;
      }
      try {
        locks().lock(fd, SHARED, WAITERS, 1);
        const created: Watched = { fd, wd: -1, change: () => undefined, listeners: new Set(), timer: undefined };
        created.change = (mask) => {
          if (watchers.get(key) !== created) return;
          // Every waiter is woken even if the lock is already taken again when this event is read: a
          // waiter that skipped those would lose every race to a holder that re-acquires at once, and
          // other processes would starve (measured: handoffs to them all but stopped).
          for (const wake of [...created.listeners]) wake();
          // Unlinked (a sweep: the link count drops while our descriptor keeps the inode alive), moved
          // or deleted: nobody uses this file any more, so the next waiter must watch the new one.
          if (mask & IN_GONE || (mask & IN_ATTRIB && fstatSync(created.fd).nlink === 0)) retire(key, created);
        };
        created.wd = watchFile(path, created.change);
        watchers.set(key, (entry = created));
      } catch (error) {
        closeSync(fd);
        throw error;
      }
    }
    entry.listeners.add(listener);
    return true;
  }

  function unsubscribe(key: string, listener: () => void): void {
    const entry = watchers.get(key);
    if (!entry?.listeners.delete(listener) || entry.listeners.size > 0) return;
    // One timer per watcher, re-armed instead of remade: a contended name's set empties every round.
    if (entry.timer) return void entry.timer.refresh();
    entry.timer = setTimeout(() => {
      if (entry.listeners.size === 0) retire(key, entry);
    }, linger);
    entry.timer.unref();
  }

  function retire(key: string, entry: Watched): void {
    if (watchers.get(key) !== entry) return;
    watchers.delete(key);
    if (entry.timer) clearTimeout(entry.timer);
    unwatchFile(entry.wd, entry.change);
    closeSync(entry.fd);
  }

  /** The ttl is kept by the holding process: a lease not extended in time is ended here. */
  function arm(key: string, owner: string, held: Held, ttl: number): void {
    if (held.timer) clearTimeout(held.timer);
    held.timer = setTimeout(() => {
      if (leases.get(id(key, owner)) === held) end(key, owner, held).catch(() => undefined);
    }, ttl);
    held.timer.unref();
  }

  return {
    name: 'file',
    capabilities: { shared: true, wake: true, fencing: true, expiry: 'ttl' },
    acquire,

    async extend(key, owner, ttl) {
      const held = leases.get(id(key, owner));
      // Someone deleting the lock file by hand would let a newcomer lock a fresh file: that is a loss.
      if (!held || !current(held.file)) return false;
      arm(key, owner, held, ttl);
      const { file } = held;
      if (held.mode === 'exclusive') locks().renew(file.header, Date.now() + ttl);
      else {
        await withMeta(key, file, (records) => {
          const record = records?.[owner];
          if (!records || !record) return;
          record.expiresAt = Date.now() + ttl;
          write(file, records);
        });
      }
      return true;
    },

    async release(key, owner) {
      withdraw(key, owner);
      const held = leases.get(id(key, owner));
      if (!held) return false;
      await end(key, owner, held);
      return true;
    },

    async inspect(key): Promise<LockInfo | null> {
      const l = locks();
      let file = idle.get(key)?.files.pop();
      if (!file) {
        try {
          file = open(key, false);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw error;
        }
      }
      try {
        const held = l.probe(file.fd, EXCLUSIVE, MAIN, 1);
        if (held === 0) return null;
        if (held === EXCLUSIVE) {
          const r = l.holder(file.header);
          return { key, mode: 'exclusive', holders: r && alive(r[3]) ? [{ owner: r[0], fence: r[1], expiresAt: r[2] }] : [] };
        }
        const records = await withMeta(key, file, (c) => c);
        const holders: LeaseHolder[] = live(file, records).map(([owner, r]) => ({ owner, fence: BigInt(r.fence), expiresAt: r.expiresAt }));
        return { key, mode: 'shared', holders };
      } finally {
        park(key, file);
      }
    },

    waitForChange(key, signal) {
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        const done = (): void => {
          signal.removeEventListener('abort', done);
          unsubscribe(key, done);
          resolve();
        };
        // No file: the key is free now. A watch that cannot be set up (no inotify instances or
        // watches left, say) throws, and the waiter falls back to polling instead of spinning.
        if (!subscribe(key, done)) return resolve();
        signal.addEventListener('abort', done, { once: true });
      });
    },

    close() {
      for (const [k, held] of [...leases]) {
        leases.delete(k);
        if (held.timer) clearTimeout(held.timer);
        shut(held.file); // the kernel drops its locks; its record is pruned by the next holder
      }
      for (const fd of intents.values()) closeSync(fd);
      intents.clear();
      for (const [key, entry] of [...watchers]) {
        for (const wake of [...entry.listeners]) wake();
        retire(key, entry);
      }
      for (const [key, spares] of [...idle]) {
        clearTimeout(spares.timer);
        expire(key, spares);
      }
      return Promise.resolve();
    },
  };
}
