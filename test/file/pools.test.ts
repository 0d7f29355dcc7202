// The file backend's pool record: rewritten in place under its lock, so a process killed between
// the write and the truncate must leave a record the next reader still understands.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileBackend, fileNameFor } from '../../src/backends/file/index.js';

const dir = mkdtempSync(join(tmpdir(), 'locksmith-file-pools-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('file pool record', () => {
  test('a shorter list written over a longer one, killed before the truncate, reads as the shorter list', async () => {
    const backend = fileBackend({ dir });
    const pools = backend.pools!;
    await pools.add('crash', ['alpha', 'bravo', 'charlie', 'delta'], 10);
    const path = join(dir, `${fileNameFor('crash')}.pool`);
    const before = readFileSync(path);
    assert.equal(before.at(-1), 0x0a, 'the record ends with a newline');
    // What the write leaves before the truncate: the new list, then the rest of the old one.
    const shorter = Buffer.from('["alpha"]\n', 'utf8');
    writeFileSync(path, Buffer.concat([shorter, before.subarray(shorter.length)]));
    assert.deepEqual(await pools.members('crash'), ['alpha']);
    // And the next change writes a clean record again.
    assert.equal(await pools.add('crash', ['echo'], 10), 1);
    assert.deepEqual((await pools.members('crash')).sort(), ['alpha', 'echo']);
    assert.equal(readFileSync(path, 'utf8'), '["alpha","echo"]\n');
    await backend.close();
  });

  test('a record written before the newline (the whole file is the list) still reads', async () => {
    const backend = fileBackend({ dir });
    const pools = backend.pools!;
    await pools.add('old', ['x'], 10);
    writeFileSync(join(dir, `${fileNameFor('old')}.pool`), '["x","y"]');
    assert.deepEqual((await pools.members('old')).sort(), ['x', 'y']);
    await backend.close();
  });
});
