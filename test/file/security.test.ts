// The file backend on a shared host, as a hostile local user would try it, and faults that used to
// kill the process: planted directories, symlinks and files, permissions, a full disk, a file
// truncated under its holder, a fence counter at its top, names that would collapse.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileBackend, fileNameFor } from '../../src/backends/file/index.js';
import { LockAcquisitionError, LockArgumentError, Locksmith } from '../../src/index.js';

const root = mkdtempSync(join(tmpdir(), 'locksmith-security-'));
after(() => rmSync(root, { recursive: true, force: true }));
/** Another local user: tests run as root (CI) so they can plant files as someone else. */
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;

function fresh(name: string): string {
  return mkdtempSync(join(root, `${name}-`));
}

/** Runs `fn` with the default directory's inputs (TMPDIR, XDG_RUNTIME_DIR) pointing at `tmp`. */
async function withTmp<T>(tmp: string, fn: () => Promise<T>): Promise<T> {
  const saved = { TMPDIR: process.env.TMPDIR, XDG: process.env.XDG_RUNTIME_DIR };
  process.env.TMPDIR = tmp;
  delete process.env.XDG_RUNTIME_DIR;
  try {
    return await fn();
  } finally {
    if (saved.TMPDIR === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved.TMPDIR;
    if (saved.XDG !== undefined) process.env.XDG_RUNTIME_DIR = saved.XDG;
  }
}

const refused = (pattern: RegExp) => (e: unknown) => e instanceof LockAcquisitionError && pattern.test(e.message);

describe('file backend on a shared host', () => {
  test('the default directory is per user and created 0700', async () => {
    const tmp = fresh('default');
    await withTmp(tmp, async () => {
      const locks = new Locksmith(fileBackend());
      await (await locks.acquire('job')).release();
      const dir = join(tmp, `locksmith-${process.geteuid!()}`);
      assert.equal(lstatSync(dir).mode & 0o777, 0o700);
      assert.equal(lstatSync(dir).uid, process.geteuid!());
      await locks.close();
    });
    const runtime = fresh('xdg');
    process.env.XDG_RUNTIME_DIR = runtime;
    try {
      const locks = new Locksmith(fileBackend({ linger: 60_000 }));
      await (await locks.acquire('job')).release();
      assert.ok(existsSync(join(runtime, 'locksmith', fileNameFor('job'))), 'under $XDG_RUNTIME_DIR/locksmith');
      await locks.close();
    } finally {
      delete process.env.XDG_RUNTIME_DIR;
    }
  });

  test('a default directory made first by another user, or writable by others, is refused and never written into', async (t) => {
    if (!isRoot) return t.skip('needs root to plant a directory as another user');
    const tmp = fresh('planted');
    const dir = join(tmp, `locksmith-${process.geteuid!()}`);
    mkdirSync(dir, { mode: 0o777 });
    chmodSync(dir, 0o777);
    chownSync(dir, NOBODY, NOBODY);
    await withTmp(tmp, async () => {
      const locks = new Locksmith(fileBackend());
      await assert.rejects(locks.acquire('job'), refused(/owned by uid 65534/));
      chownSync(dir, process.geteuid!(), process.getegid!());
      await assert.rejects(locks.acquire('job'), refused(/writable by its group/));
      rmSync(dir, { recursive: true });
      symlinkSync(fresh('elsewhere'), dir);
      await assert.rejects(locks.acquire('job'), refused(/not a directory/));
      await locks.close();
    });
  });

  test('a planted symlink is refused and its target is never opened for writing', async () => {
    const dir = fresh('symlink');
    const target = join(fresh('target'), 'important');
    writeFileSync(target, 'precious');
    symlinkSync(target, join(dir, fileNameFor('job')));
    const locks = new Locksmith(fileBackend({ dir }));
    await assert.rejects(locks.acquire('job'), refused(/symlink/));
    await assert.rejects(locks.read('job'), refused(/symlink/));
    await assert.rejects(locks.inspect('job'), refused(/symlink/));
    assert.equal(readFileSync(target, 'utf8'), 'precious');
    await locks.close();
    assert.ok(lstatSync(join(dir, fileNameFor('job'))).isSymbolicLink(), 'not unlinked either');
  });

  test("another user's lock file is refused and left as it was", async (t) => {
    if (!isRoot) return t.skip('needs root to plant a file as another user');
    const dir = fresh('foreign');
    const path = join(dir, fileNameFor('job'));
    writeFileSync(path, 'theirs');
    chownSync(path, NOBODY, NOBODY);
    const locks = new Locksmith(fileBackend({ dir }));
    await assert.rejects(locks.acquire('job'), refused(/belongs to uid 65534/));
    assert.equal(readFileSync(path, 'utf8'), 'theirs');
    await locks.close();
    // A group-shared directory accepts the group's files (the file's group is one of ours).
    chownSync(path, NOBODY, process.getegid!());
    const shared = new Locksmith(fileBackend({ dir, mode: 0o660 }));
    await (await shared.acquire('job')).release();
    await shared.close();
  });

  test('lock files are 0600 unless mode says otherwise, whatever the umask', async () => {
    const dir = fresh('mode');
    const old = process.umask(0o022);
    try {
      const locks = new Locksmith(fileBackend({ dir, linger: 60_000 }));
      const lock = await locks.acquire('private');
      assert.equal(statSync(join(dir, fileNameFor('private'))).mode & 0o777, 0o600);
      await lock.release();
      await locks.close();
      const group = new Locksmith(fileBackend({ dir: join(dir, 'group'), mode: 0o660, linger: 60_000 }));
      await (await group.acquire('shared')).release();
      assert.equal(statSync(join(dir, 'group', fileNameFor('shared'))).mode & 0o777, 0o660);
      assert.equal(statSync(join(dir, 'group')).mode & 0o777, 0o770);
      await group.close();
      // A world-readable file of ours (an older version's) would let anyone hold a read lock for ever.
      const loose = join(dir, fileNameFor('loose'));
      writeFileSync(loose, '');
      chmodSync(loose, 0o644);
      const again = new Locksmith(fileBackend({ dir, linger: 60_000 }));
      await (await again.acquire('loose')).release();
      assert.equal(statSync(loose).mode & 0o777, 0o600);
      await again.close();
    } finally {
      process.umask(old);
    }
  });

  test('a full disk is a LockAcquisitionError, not a signal (64 KiB tmpfs)', async (t) => {
    const dir = fresh('full');
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    if (mounted.status !== 0) return t.skip(`cannot mount a small tmpfs here: ${String(mounted.stderr).trim()}`);
    try {
      const fd = openSync(join(dir, 'filler'), 'w');
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096, 1));
      } catch (error) {
        assert.equal((error as NodeJS.ErrnoException).code, 'ENOSPC');
      } finally {
        closeSync(fd);
      }
      const run = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fault-child.ts'), 'full', dir], {
        encoding: 'utf8',
      });
      assert.equal(run.signal, null, `killed by ${run.signal}`);
      assert.equal(run.status, 0, run.stderr);
      const steps = JSON.parse(run.stdout) as Record<string, string>;
      assert.match(steps.acquire!, /^LockAcquisitionError: .*no space left/);
      assert.match(steps.read!, /^LockAcquisitionError: .*no space left/);
    } finally {
      execFileSync('umount', [dir]);
    }
  });

  test('a lock file truncated under its holders kills nothing; the holders carry on', () => {
    const dir = fresh('truncate');
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fault-child.ts'), 'truncate', dir], {
      encoding: 'utf8',
    });
    assert.equal(run.signal, null, `killed by ${run.signal}`);
    assert.equal(run.status, 0, run.stderr);
    const steps = JSON.parse(run.stdout) as Record<string, string>;
    for (const [name, outcome] of Object.entries(steps)) assert.equal(outcome, 'ok', name);
    assert.equal(Object.keys(steps).length, 7);
  });

  test('a fence counter at 2^64-1 refuses with a clear error instead of wrapping to 0', async () => {
    const dir = fresh('fence');
    const locks = new Locksmith(fileBackend({ dir, linger: 60_000 }));
    for (const [key, take] of [
      ['top', () => locks.acquire('top')],
      ['top-shared', () => locks.read('top-shared')],
    ] as const) {
      const first = await take();
      await first.release();
      // The counter is the first copy of the last fence in the header page, whatever its layout.
      const fd = openSync(join(dir, fileNameFor(key)), 'r+');
      const page = Buffer.alloc(4096);
      readSync(fd, page, 0, 4096, 0);
      const value = Buffer.alloc(8);
      value.writeBigUInt64LE(first.fence);
      const at = page.indexOf(value);
      assert.ok(at >= 0, 'the fence is in the header');
      writeSync(fd, Buffer.from('ffffffffffffffff', 'hex'), 0, 8, at);
      closeSync(fd);
      await assert.rejects(
        take(),
        (e: unknown) => e instanceof LockAcquisitionError && e.cause instanceof Error && /2\^64-1/.test(e.cause.message),
      );
    }
    await locks.close();
  });

  test('names with lone surrogates are a LockArgumentError, so different names never share a lock', async () => {
    const locks = new Locksmith(fileBackend({ dir: fresh('names') }));
    for (const key of ['a\uD800', 'a\uDBFF', '\uDC00b']) {
      await assert.rejects(locks.acquire(key), LockArgumentError, JSON.stringify(key));
      assert.throws(() => fileNameFor(key), LockArgumentError);
    }
    await (await locks.acquire('pair \uD83D\uDD12')).release(); // a paired surrogate is a character like any other
    await locks.close();
  });
});
