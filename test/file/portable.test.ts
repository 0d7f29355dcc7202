// Off Linux: the portable flock(2) build (built here from the same source with LOCKSMITH_LOCKS=flock,
// as macOS and the BSDs build it; .ci/run also runs the conformance suite and the file tests on
// it), and Windows, where the file backend cannot run and says what to use instead.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileBackend } from '../../src/backends/file/index.js';
import { backendFor } from '../../src/cli/backends.js';
import { LockArgumentError } from '../../src/index.js';

const root = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'locksmith-portable-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `fn` while process.platform says `platform`. */
async function as<T>(platform: NodeJS.Platform, fn: () => Promise<T>): Promise<T> {
  const real = Object.getOwnPropertyDescriptor(process, 'platform')!;
  Object.defineProperty(process, 'platform', { ...real, value: platform });
  try {
    return await fn();
  } finally {
    Object.defineProperty(process, 'platform', real);
  }
}

describe('file backend off Linux', () => {
  test('the flock build keeps each byte range in a file of its own and sweeps them with the lock file', { timeout: 120_000 }, () => {
    const flock = join(root, 'build/flock');
    if (!existsSync(join(flock, 'build/Release/locksmith_file.node')))
      execFileSync(process.execPath, ['scripts/build-native.mjs', '--flock'], { cwd: root, stdio: 'inherit' });
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'flock-child.ts'), dir], {
      encoding: 'utf8',
      env: { ...process.env, FENCELOCK_PREBUILD: flock },
    });
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout) as { kind: string; writerRefused: boolean; thirdRefused: boolean; held: string[]; after: string[] };
    assert.equal(out.kind, 'flock');
    assert.equal(out.writerRefused, true, 'a reader keeps a writer out');
    assert.equal(out.thirdRefused, true, 'two permits of two');
    assert.deepEqual(out.held, ['rw.lock', 'rw.lock.meta', 'sem.lock', 'sem.lock.meta', 'sem.lock.slot0', 'sem.lock.slot1']);
    assert.deepEqual(out.after, [], 'released and swept, range files included');
  });

  test('on Windows fileBackend() throws a LockArgumentError naming the backends that work there', async () => {
    await as('win32', async () => {
      assert.throws(
        () => fileBackend(),
        (e: unknown) =>
          e instanceof LockArgumentError && /Windows/.test(e.message) && /memory, redis, redlock, postgres or etcd/.test(e.message),
      );
    });
  });

  test('on Windows the CLI says the same and how to pick a backend', async () => {
    await as('win32', async () => {
      await assert.rejects(
        backendFor('file:'),
        (e: unknown) =>
          e instanceof Error &&
          e.name === 'UsageError' &&
          /Windows/.test(e.message) &&
          /--backend/.test(e.message) &&
          /LOCKSMITH_BACKEND/.test(e.message),
      );
    });
  });
});
