// The file backend across real processes: crash safety, mutual exclusion, file naming and cleanup.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { after, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { fileBackend, fileNameFor } from '../../src/backends/file/index.js';
import { EXCLUSIVE, WAITERS, native } from '../../src/backends/file/native.js';
import { LockArgumentError, Locksmith } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'locksmith-file-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** The lines a child process or worker prints; line() resolves with the next one to arrive. */
function reader(stream: Readable): { lines: string[]; line: () => Promise<string> } {
  const lines: string[] = [];
  let waiting: ((l: string) => void) | undefined;
  let buffer = '';
  stream.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const l = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      lines.push(l);
      waiting?.(l);
    }
  });
  return { lines, line: () => new Promise((resolve) => (waiting = resolve)) };
}

function child(...args: string[]): { proc: ChildProcess; lines: string[]; line: () => Promise<string>; exit: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'child.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, ...reader(proc.stdout), exit };
}

/**
 * Whether some process has registered as waiting on `key`'s lock file: a read lock on WAITERS with
 * OFD locks; with flock (no ranges to register on: every release wakes) an inotify watch on the file.
 */
function registered(key: string, where = dir): boolean {
  const path = join(where, fileNameFor(key));
  if (native().kind === 'flock') return watchedByAnyone(statSync(path).ino);
  const fd = openSync(path, 'r');
  try {
    return native().probe(fd, EXCLUSIVE, WAITERS, 1) !== 0;
  } finally {
    closeSync(fd);
  }
}

/** Whether any process has an inotify watch on inode `ino` (/proc/PID/fdinfo lists each watch's inode in hex). */
function watchedByAnyone(ino: number): boolean {
  const mark = ` ino:${ino.toString(16)} `;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        if (readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').includes(mark)) return true;
      } catch {
        // closed meanwhile
      }
    }
  }
  return false;
}

/** Resolves once `check()` holds; fails after `ms`. For observable states, not for timing. */
async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** This process's open descriptors on `key`'s lock file. */
function opened(key: string, where: string): number {
  const path = join(where, fileNameFor(key));
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  }).length;
}

describe('file backend', () => {
  test('a SIGKILLed holder frees the lock for another process within 100 ms', async () => {
    const locks = new Locksmith(fileBackend({ dir }), { ttl: 30_000 });
    const holder = child('hold', dir, 'crash');
    const held = await holder.line();
    assert.match(held, /^held \d+ \S+$/);
    assert.equal(await locks.tryAcquire('crash'), null);
    const waiting = locks.acquire('crash', { wait: 5_000 });
    await new Promise((r) => setTimeout(r, 50));
    const killed = performance.now();
    holder.proc.kill('SIGKILL');
    const lock = await waiting;
    const gap = performance.now() - killed;
    assert.ok(gap < 100, `acquired ${gap.toFixed(1)} ms after the kill`);
    assert.ok(lock.fence > BigInt(held.split(' ')[1]!));
    await lock.release();
    await locks.close();
  });

  test("another process sees the holder's record in the shared header, and no holder once it dies", async () => {
    const locks = new Locksmith(fileBackend({ dir }));
    const holder = child('hold', dir, 'seen');
    const [, fence, owner] = (await holder.line()).split(' ');
    const info = await locks.inspect('seen');
    assert.deepEqual(info && { mode: info.mode, holders: info.holders.map((h) => ({ owner: h.owner, fence: h.fence })) }, {
      mode: 'exclusive',
      holders: [{ owner, fence: BigInt(fence!) }],
    });
    holder.proc.kill('SIGKILL');
    await holder.exit;
    assert.equal(await locks.inspect('seen'), null);
    const next = await locks.acquire('seen');
    assert.ok(next.fence > BigInt(fence!));
    await next.release();
    await locks.close();
  });

  test("a reader's record left behind does not outlive the next exclusive grant", async () => {
    // close() drops the locks without rewriting records, as a crash would; this process stays alive,
    // so only the fence floor set by the writer can tell that record is stale.
    const ghost = fileBackend({ dir });
    await ghost.acquire({ key: 'ghost', owner: 'ghost', ttl: 30_000, mode: 'shared' });
    await ghost.close();
    const locks = new Locksmith(fileBackend({ dir }));
    await (await locks.write('ghost')).release();
    const reader = await locks.read('ghost');
    assert.deepEqual(
      (await locks.inspect('ghost'))?.holders.map((h) => h.owner),
      [reader.owner],
    );
    await reader.release();
    await locks.close();
  });

  test('a waiter in another process is woken by the release, not by polling', async () => {
    // Long linger: sweeping the file would be a change event of its own.
    const locks = new Locksmith(fileBackend({ dir, linger: 60_000 }));
    const lock = await locks.acquire('wake');
    const waiter = child('wait', dir, 'wake');
    assert.equal(await waiter.line(), 'waiting');
    assert.ok(registered('wake'), 'it registered as a waiter');
    const got = waiter.line();
    await lock.release();
    // Its poll and retry are a minute apart: only the release's wake-up gets it there in time.
    const line = await Promise.race([got, new Promise<string>((r) => setTimeout(() => r('not woken'), 15_000).unref())]);
    assert.match(line, /^got \d+$/);
    assert.ok(BigInt(line.split(' ')[1]!) > lock.fence);
    assert.equal(await waiter.exit, 0);
    await locks.close();
  });

  test('a waiter in another process is woken at once when the holder crashes, not by polling', async () => {
    const holder = child('hold', dir, 'crash-wake');
    const [, fence] = (await holder.line()).split(' ');
    const waiter = child('wait', dir, 'crash-wake');
    assert.equal(await waiter.line(), 'waiting');
    const got = waiter.line();
    holder.proc.kill('SIGKILL'); // no release, no touch: only the kernel closing its files
    const line = await Promise.race([got, new Promise<string>((r) => setTimeout(() => r('not woken'), 15_000).unref())]);
    assert.match(line, /^got \d+$/);
    assert.ok(BigInt(line.split(' ')[1]!) > BigInt(fence!));
    assert.equal(await waiter.exit, 0);
  });

  test('a waiter whose lock file was swept and re-created watches the new file', async () => {
    const sub = mkdtempSync(join(dir, 'swept-'));
    const path = join(sub, fileNameFor('swept'));
    const holder = new Locksmith(fileBackend({ dir: sub, linger: 50 }));
    // Only wake-ups reach this one in time; it keeps its watcher (and spare file) long after a wait.
    const waiter = new Locksmith(fileBackend({ dir: sub, linger: 60_000, poll: 60_000 }), { backoff: { initial: 60_000, max: 60_000 } });
    const first = await holder.acquire('swept');
    const waiting = waiter.acquire('swept', { wait: 20_000 });
    await until(() => registered('swept', sub), 'the waiter registers');
    await first.release();
    await (await waiting).release();
    await until(() => !existsSync(path), "the holder's sweep removes the idle file");
    const second = await holder.acquire('swept'); // a new file at the path
    const again = waiter.acquire('swept', { wait: 20_000 });
    await until(() => registered('swept', sub), 'the waiter registers on the new file');
    await second.release();
    const lock = await again;
    assert.ok(lock.fence > second.fence);
    await lock.release();
    await Promise.all([holder.close(), waiter.close()]);
  });

  test('works in worker threads (each with its own watch on its own event loop), which may end mid-wait', async () => {
    const locks = new Locksmith(fileBackend({ dir }));
    const lock = await locks.acquire('worker');
    const start = (): { worker: Worker; line: () => Promise<string>; exit: Promise<number> } => {
      // A worker runs no --import of its own: it registers tsx before loading the TypeScript child. A
      // data: URL has no script name in process.argv, so the first argument stands in for it.
      const boot = `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))}; register(); await import(${JSON.stringify(pathToFileURL(join(import.meta.dirname, 'child.ts')).href)});`;
      const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), {
        argv: ['child.ts', 'wait', dir, 'worker'],
        stdout: true,
      });
      return { worker, ...reader(worker.stdout), exit: new Promise((resolve) => worker.on('exit', resolve)) };
    };
    const woken = start();
    assert.equal(await woken.line(), 'waiting');
    await until(() => registered('worker'), 'the worker registers');
    const got = woken.line();
    await lock.release();
    assert.match(await got, /^got \d+$/);
    assert.equal(await woken.exit, 0);

    const again = await locks.acquire('worker');
    const ended = start();
    assert.equal(await ended.line(), 'waiting');
    await until(() => registered('worker'), 'the second worker registers');
    await ended.worker.terminate(); // its environment's watch is torn down with it
    await again.release();
    await (await locks.acquire('worker', { wait: 0 })).release();
    await locks.close();
  });

  test('a wait aborted midway leaves no registration, no open file and no wake-up behind', async () => {
    const sub = mkdtempSync(join(dir, 'abort-'));
    const holder = new Locksmith(fileBackend({ dir: sub, linger: 50 }));
    const lock = await holder.acquire('abort');
    const before = opened('abort', sub);
    const waiter = new Locksmith(fileBackend({ dir: sub, linger: 50 }));
    const stop = new AbortController();
    const waiting = waiter.acquire('abort', { wait: 60_000, signal: stop.signal });
    await until(() => registered('abort', sub), 'the waiter registers');
    stop.abort(new Error('changed my mind'));
    await assert.rejects(waiting, /changed my mind/);
    await until(() => !registered('abort', sub) && opened('abort', sub) === before, 'the waiter lets go of the file');
    await lock.release();
    assert.equal(await holder.inspect('abort'), null);
    await Promise.all([holder.close(), waiter.close()]);
  });

  test('a waiting process that crashes leaves no registration behind; the lock still changes hands', async () => {
    const locks = new Locksmith(fileBackend({ dir }));
    const lock = await locks.acquire('crash-waiter');
    const waiter = child('wait', dir, 'crash-waiter');
    assert.equal(await waiter.line(), 'waiting');
    assert.ok(registered('crash-waiter'), 'it registered as a waiter');
    waiter.proc.kill('SIGKILL');
    await waiter.exit;
    assert.equal(registered('crash-waiter'), false, 'the kernel dropped its registration with its files');
    await lock.release();
    const next = await locks.acquire('crash-waiter', { wait: 0 });
    assert.ok(next.fence > lock.fence);
    await next.release();
    await locks.close();
  });

  test('three processes never lose an update, and fences only increase', async () => {
    const counter = join(dir, 'counter.txt');
    writeFileSync(counter, '0');
    const workers = [0, 1, 2].map(() => child('count', dir, 'counter', counter, '25'));
    const codes = await Promise.all(workers.map((w) => w.exit));
    assert.deepEqual(codes, [0, 0, 0]);
    assert.equal(readFileSync(counter, 'utf8'), '75');
    const fences = workers.flatMap((w) => w.lines.map((l) => BigInt(l)));
    assert.equal(new Set(fences).size, 75, 'every grant has its own fence');
  });

  test('lock names become safe, distinct file names', () => {
    const names = ['../x', '/etc/passwd', 'a/b', 'nul\u0000byte', '.hidden', '..', 'é', 'x'.repeat(1000), 'x'.repeat(999) + 'y'];
    const files = names.map(fileNameFor);
    for (const f of files) {
      assert.ok(!f.includes('/') && !f.includes('\u0000'), f);
      assert.ok(!f.startsWith('.'), f);
      assert.ok(Buffer.byteLength(f) <= 255, `${f.length}`);
    }
    assert.equal(new Set(files).size, names.length);
    assert.equal(fileNameFor('orders:42'), 'orders%3a42.lock');
  });

  test('released lock files are removed (after linger), and fences keep rising without them', async () => {
    const lingering = mkdtempSync(join(dir, 'linger-'));
    const slow = new Locksmith(fileBackend({ dir: lingering, linger: 100 }));
    await (await slow.acquire('hot')).release();
    assert.deepEqual(readdirSync(lingering), ['hot.lock'], 'kept open for reuse a moment');
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual(readdirSync(lingering), []);
    await slow.close();

    const sub = mkdtempSync(join(dir, 'clean-'));
    const locks = new Locksmith(fileBackend({ dir: sub, linger: 0 }));
    const first = await locks.acquire('gone');
    assert.deepEqual(readdirSync(sub), ['gone.lock']);
    await first.release();
    assert.deepEqual(readdirSync(sub), []);
    const second = await locks.acquire('gone');
    assert.ok(second.fence > first.fence);
    const r1 = await locks.read('shared');
    const r2 = await locks.read('shared');
    await r1.release();
    assert.ok(existsSync(join(sub, 'shared.lock')), 'kept while another reader holds it');
    await r2.release();
    assert.equal(existsSync(join(sub, 'shared.lock')), false);
    await second.release();
    await locks.close();
  });

  test('without its native addon the package still loads, and the file backend says what is missing', async () => {
    // A copy of the sources with no build/ next to them: a machine where the addon could not build.
    const root = mkdtempSync(join(dir, 'unbuilt-'));
    cpSync(join(import.meta.dirname, '../../src'), join(root, 'src'), { recursive: true });
    const core = (await import(join(root, 'src/index.ts'))) as typeof import('../../src/index.js');
    const memory = (await import(join(root, 'src/backends/memory/index.ts'))) as typeof import('../../src/backends/memory/index.js');
    const file = (await import(join(root, 'src/backends/file/index.ts'))) as typeof import('../../src/backends/file/index.js');
    const works = new core.Locksmith(memory.memoryBackend());
    await (await works.acquire('x')).release();
    const broken = new core.Locksmith(file.fileBackend({ dir: root }));
    await assert.rejects(
      broken.acquire('x'),
      (e: unknown) => e instanceof core.LockAcquisitionError && /native addon/.test(e.message) && /npm rebuild/.test(e.message),
    );
    await Promise.all([works.close(), broken.close()]);
  });

  test('bad options are rejected before any file is touched', () => {
    for (const options of [
      { dir: '' },
      { dir: 5 },
      { dir: 'a\u0000b' },
      { mode: 0o400 },
      { mode: 0o1600 },
      { mode: '600' },
      { mode: 416.5 },
      { poll: 0 },
      { poll: 1.5 },
      { poll: '25' },
      { linger: -1 },
      { linger: NaN },
      { folder: '/tmp' },
      'x',
    ]) {
      assert.throws(() => fileBackend(options as never), LockArgumentError, JSON.stringify(options));
    }
  });
});
