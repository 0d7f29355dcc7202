// Local locks held by the kernel: one file per lock name, with open file description (OFD) byte-range
// locks on it. The kernel drops a lock the moment its holder's file is closed, so a crashed holder
// frees the lock at once, with no TTL to wait out. Several processes (and several backends in one
// process: each lease has its own open file) exclude each other on the same host.
//
// Byte ranges (locks are advisory and independent of the file's content):
//   MAIN    exclusive holders lock it for writing, readers and semaphore permits for reading
//   INTENT  writers waiting under writer preference hold a read lock; such readers probe it
//   META    a short exclusive lock around reading and rewriting the content
//   WAITERS waiters hold a read lock while subscribed, so a release knows whether to wake anyone
//   SLOTS   semaphore permit i holds an exclusive lock on SLOTS + i
// Content: JSON with the fence counter and one record per holder (owner, fence, expiry, pid), for
// fencing and inspect().

import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, futimesSync, mkdirSync, openSync, readSync, statSync, unlinkSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AcquireRequest, AcquireResult, LeaseHolder, LockBackend, LockInfo, LeaseMode } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { EXCLUSIVE, SHARED, UNLOCK, ofd, type OfdLocks } from './native.js';

const MAIN = 0;
const INTENT = 1;
const META = 2;
const WAITERS = 3;
const SLOTS = 16;

/** How long to keep trying for META before giving up: it is only held for a read and a write. */
const META_PATIENCE_MS = 2_000;

export interface FileBackendOptions {
  /** Where lock files live (created if missing). Default: <os tmpdir>/locksmith. */
  dir?: string;
  /**
   * How often a refused waiter retries, in ms (default 25). Releases wake waiters through file
   * change events at once; the poll is the net for a holder that died (the kernel frees its lock
   * silently).
   */
  poll?: number;
  /**
   * How long a released lock file stays open for reuse before it is removed, in ms (default 1000;
   * 0 removes it at release). Keeps a busy name from being re-created on every acquisition.
   */
  linger?: number;
}

interface Record {
  fence: string;
  expiresAt: number;
  mode: LeaseMode;
  pid: number;
}

interface Content {
  fence?: string;
  holders?: { [owner: string]: Record };
}

interface Watched {
  fd: number;
  watcher: FSWatcher;
  listeners: Set<() => void>;
  timer: NodeJS.Timeout | undefined;
}

interface Held {
  fd: number;
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

function clockFence(): bigint {
  return BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1000));
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function fileBackend(options?: FileBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['dir', 'poll', 'linger'], 'fileBackend()');
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.dir.length === 0 || o.dir.includes('\0'))) {
    throw new LockArgumentError('fileBackend(): dir must be a non-empty path');
  }
  if (o.poll !== undefined && (typeof o.poll !== 'number' || !Number.isInteger(o.poll) || o.poll < 1 || o.poll > 60_000)) {
    throw new LockArgumentError('fileBackend(): poll must be an integer number of ms from 1 to 60000');
  }
  if (o.linger !== undefined && (typeof o.linger !== 'number' || !Number.isInteger(o.linger) || o.linger < 0 || o.linger > 3_600_000)) {
    throw new LockArgumentError('fileBackend(): linger must be an integer number of ms from 0 to 3600000');
  }
  const dir = o.dir ?? join(tmpdir(), 'locksmith');
  const poll = o.poll ?? 25;
  const linger = o.linger ?? 1_000;
  const idle = new Map<string, { fd: number; timer: NodeJS.Timeout }>();
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

  // Per open file: its inode (fixed for the life of the descriptor) and the content's last known size.
  const inodes = new Map<number, number>();
  const sizes = new Map<number, number>();
  let scratch = Buffer.alloc(4096);

  function open(key: string): number {
    const fd = openSync(pathOf(key), constants.O_RDWR | constants.O_CREAT, 0o666);
    const stat = fstatSync(fd);
    inodes.set(fd, stat.ino);
    sizes.set(fd, stat.size);
    return fd;
  }

  function shut(fd: number): void {
    inodes.delete(fd);
    sizes.delete(fd);
    closeSync(fd);
  }

  /** The content, or undefined when it does not parse (a write in progress, seen by inspect). */
  function read(fd: number): Content | undefined {
    // Read until a short read instead of asking fstat for the size: one call fewer per acquisition.
    let size = 0;
    for (;;) {
      if (size === scratch.length) scratch = Buffer.concat([scratch, Buffer.alloc(scratch.length)]);
      const n = readSync(fd, scratch, size, scratch.length - size, size);
      size += n;
      if (n === 0 || size < scratch.length) break;
    }
    sizes.set(fd, size);
    if (size === 0) return {};
    try {
      return JSON.parse(scratch.toString('utf8', 0, size)) as Content;
    } catch {
      return undefined;
    }
  }

  /** Call only after read() under the lock that guards the content, so the known size is current. */
  function write(fd: number, content: Content): void {
    // Overwrite in place, padding with spaces (valid trailing JSON whitespace) instead of truncating:
    // on ext4 a truncate-then-write makes close() flush the file (auto_da_alloc), ~10× the cost.
    const text = Buffer.from(JSON.stringify(content));
    const size = sizes.get(fd) ?? 0;
    const buf = text.length < size ? Buffer.concat([text, Buffer.alloc(size - text.length, 0x20)]) : text;
    writeSync(fd, buf, 0, buf.length, 0);
    sizes.set(fd, buf.length);
  }

  /**
   * Runs `fn` on the content under the lock that guards it. An exclusive holder already excludes
   * every other writer (readers and sweepers need MAIN too), so it needs no META and saves two
   * calls; shared holders update the content side by side and take META.
   */
  async function guarded<T>(key: string, fd: number, mode: LeaseMode, fn: (content: Content) => T): Promise<T> {
    if (mode === 'exclusive') return fn(read(fd) ?? {});
    return withMeta(key, fd, (content) => fn(content ?? {}));
  }

  /** Runs `fn` on the content under META. */
  async function withMeta<T>(key: string, fd: number, fn: (content: Content | undefined) => T): Promise<T> {
    const l = locks();
    const start = performance.now();
    while (!l.lock(fd, EXCLUSIVE, META, 1)) {
      if (performance.now() - start > META_PATIENCE_MS) {
        throw new LockAcquisitionError(`"${key}": the lock file's metadata stayed locked for ${META_PATIENCE_MS} ms (a holder paused mid-update?)`, { key });
      }
      await sleep(1);
    }
    try {
      return fn(read(fd));
    } finally {
      l.lock(fd, UNLOCK, META, 1);
    }
  }

  /** Whether `fd` still names the file at `key`'s path (a releaser may have unlinked it). */
  function current(key: string, fd: number): boolean {
    try {
      return statSync(pathOf(key)).ino === inodes.get(fd);
    } catch {
      return false;
    }
  }

  function takeRanges(l: OfdLocks, fd: number, req: AcquireRequest): boolean {
    if (req.mode === 'exclusive') return l.lock(fd, EXCLUSIVE, MAIN, 1);
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
    const fd = open(key);
    if (locks().lock(fd, SHARED, INTENT, 1)) intents.set(k, fd);
    else shut(fd);
  }

  function withdraw(key: string, owner: string): boolean {
    const k = id(key, owner);
    const fd = intents.get(k);
    if (fd === undefined) return false;
    intents.delete(k);
    shut(fd);
    return true;
  }

  /** Ends a lease: its record removed (the rewrite wakes watchers), its locks dropped, its file parked. */
  async function end(key: string, owner: string, held: Held): Promise<void> {
    leases.delete(id(key, owner));
    if (held.timer) clearTimeout(held.timer);
    try {
      // An exclusive holder's record needs no removal: inspect() ignores records while MAIN is free,
      // and the next exclusive holder replaces them. A reader's goes, as other readers may remain.
      if (held.mode === 'shared') {
        await withMeta(key, held.fd, (content = {}) => {
          delete content.holders?.[owner];
          write(held.fd, content);
        });
      }
    } finally {
      const l = locks();
      l.lock(held.fd, UNLOCK, 0, 0);
      // Wake waiters only after unlocking (a waiter woken earlier would find it still held), and only
      // if there are any: a metadata touch is the change event their watchers see, not a content write.
      if (l.probe(held.fd, EXCLUSIVE, WAITERS, 1) !== 0) {
        const now = new Date();
        futimesSync(held.fd, now, now);
      }
      park(key, held.fd, true);
    }
  }

  /** An open lock file for `key`: the parked one if there is one (saves an open and a create). */
  function openFor(key: string): number {
    const spare = idle.get(key);
    if (!spare) return open(key);
    idle.delete(key);
    clearTimeout(spare.timer);
    return spare.fd;
  }

  /**
   * Keeps a released file open for `linger` ms, so a name used again soon costs no open and no
   * re-create, then cleans it up (sweep). One spare per name is enough.
   */
  function park(key: string, fd: number, unlocked = false): void {
    if (!unlocked) locks().lock(fd, UNLOCK, 0, 0); // length 0: every range this open file holds
    if (linger === 0) return sweep(key, fd);
    // One spare per name is enough. Only a name left idle for `linger` is swept: sweeping a busy one
    // would make every waiter's watcher watch a deleted file.
    if (idle.has(key)) return shut(fd);
    const timer = setTimeout(() => {
      if (idle.get(key)?.fd !== fd) return;
      idle.delete(key);
      sweep(key, fd);
    }, linger);
    timer.unref();
    idle.set(key, { fd, timer });
  }

  /**
   * Removes a lock file nobody holds. Race-free because it happens while we hold MAIN exclusively: an
   * acquirer that opened the old file and locks it afterwards sees a different inode at the path
   * (current()) and retries on the new file. The fence counter goes with the file; the next file
   * reseeds it from the clock, so fences still only increase.
   */
  function sweep(key: string, fd: number): void {
    try {
      if (locks().lock(fd, EXCLUSIVE, MAIN, 1) && current(key, fd)) unlinkSync(pathOf(key));
    } catch {
      // Cleanup is best effort: a file left behind is reused by the next acquisition.
    } finally {
      shut(fd);
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
      const fd = openFor(req.key);
      let granted = false;
      let stale = false;
      try {
        granted = takeRanges(l, fd, req);
        if (!granted) {
          if (req.mode === 'exclusive' && req.intent) announce(req.key, req.owner);
          return { granted: false, retryAfter: poll };
        }
        if (!current(req.key, fd)) {
          stale = true;
          continue; // locked a file a sweeper just unlinked: try the one at the path now
        }
        const held: Held = { fd, mode: req.mode, fence: 0n, timer: undefined };
        held.fence = await guarded(req.key, fd, req.mode, (content) => {
          const fence = content.fence !== undefined ? BigInt(content.fence) + 1n : clockFence() + 1n;
          const holders: { [owner: string]: Record } = {};
          if (req.mode === 'shared') {
            // Records of holders that died without releasing are dropped here.
            for (const [owner, r] of Object.entries(content.holders ?? {})) if (r.mode === 'shared' && alive(r.pid)) holders[owner] = r;
          }
          holders[req.owner] = { fence: fence.toString(), expiresAt: Date.now() + req.ttl, mode: req.mode, pid: process.pid };
          write(fd, { fence: fence.toString(), holders });
          return fence;
        });
        withdraw(req.key, req.owner);
        leases.set(k, held);
        arm(req.key, req.owner, held, req.ttl);
        return { granted: true, fence: held.fence };
      } finally {
        if (stale) shut(fd);
        else if (!granted || !leases.has(k)) park(req.key, fd);
      }
    }
  }

  /**
   * One watcher per name for all of this backend's waiters, kept a moment after the last one leaves
   * (a contended name is waited on again right away). While it exists it holds a read lock on
   * WAITERS, which is how a releaser knows to touch the file. Registering (the lock, then the watch)
   * happens before the caller's next attempt: a release either sees us or came before that attempt.
   */
  function subscribe(key: string, listener: () => void): boolean {
    let entry = watchers.get(key);
    if (!entry) {
      let fd: number | undefined;
      try {
        fd = openSync(pathOf(key), constants.O_RDWR);
        locks().lock(fd, SHARED, WAITERS, 1);
        // Not persistent: a watcher must not keep the process alive; the waiter's own timer does.
        const watcher = watch(pathOf(key), { persistent: false }, (event) => {
          notify(key);
          // 'rename' here means the file was unlinked (swept): this watcher now watches a file nobody
          // uses, so the next waiter must watch the new one.
          if (event === 'rename') retire(key, created);
        });
        const created: Watched = { fd, watcher, listeners: new Set(), timer: undefined };
        watcher.on('error', () => {
          notify(key);
          retire(key, created);
        });
        watchers.set(key, (entry = created));
      } catch {
        if (fd !== undefined) closeSync(fd);
        return false;
      }
    }
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.listeners.add(listener);
    return true;
  }

  function unsubscribe(key: string, listener: () => void): void {
    const entry = watchers.get(key);
    if (!entry?.listeners.delete(listener) || entry.listeners.size > 0) return;
    entry.timer = setTimeout(() => retire(key, entry), linger);
    entry.timer.unref();
  }

  function notify(key: string): void {
    const entry = watchers.get(key);
    if (entry) for (const listener of [...entry.listeners]) listener();
  }

  function retire(key: string, entry: Watched): void {
    if (watchers.get(key) !== entry) return;
    watchers.delete(key);
    if (entry.timer) clearTimeout(entry.timer);
    entry.watcher.close();
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
      if (!held || !current(key, held.fd)) return false;
      arm(key, owner, held, ttl);
      await guarded(key, held.fd, held.mode, (content) => {
        const record = content.holders?.[owner];
        if (record) {
          record.expiresAt = Date.now() + ttl;
          write(held.fd, content);
        }
      });
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
      let fd: number;
      try {
        fd = openSync(pathOf(key), constants.O_RDWR);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
      try {
        const held = l.probe(fd, EXCLUSIVE, MAIN, 1);
        if (held === 0) return null;
        const mode: LeaseMode = held === EXCLUSIVE ? 'exclusive' : 'shared';
        // An exclusive holder writes without META (see guarded()), so a read may catch a write half
        // done: read again.
        let content: Content | undefined;
        for (let i = 0; i < 5 && content === undefined; i++) content = await withMeta(key, fd, (c) => c);
        const holders: LeaseHolder[] = Object.entries(content?.holders ?? {})
          .filter(([, r]) => r.mode === mode && alive(r.pid))
          .map(([owner, r]) => ({ owner, fence: BigInt(r.fence), expiresAt: r.expiresAt }));
        return { key, mode, holders };
      } finally {
        shut(fd);
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
        if (!subscribe(key, done)) return resolve(); // no file: the key is free now
        signal.addEventListener('abort', done, { once: true });
      });
    },

    close() {
      for (const [k, held] of [...leases]) {
        leases.delete(k);
        if (held.timer) clearTimeout(held.timer);
        shut(held.fd); // the kernel drops its locks; its record is pruned by the next holder
      }
      for (const fd of intents.values()) shut(fd);
      intents.clear();
      for (const [key, entry] of [...watchers]) {
        for (const listener of [...entry.listeners]) listener();
        retire(key, entry);
      }
      for (const [key, spare] of [...idle]) {
        idle.delete(key);
        clearTimeout(spare.timer);
        sweep(key, spare.fd);
      }
      return Promise.resolve();
    },
  };
}
