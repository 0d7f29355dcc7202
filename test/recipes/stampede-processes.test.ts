// 100 concurrent gets of a cold key from four processes sharing one Redis: the fetcher runs once.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { RedisNode } from '../support/redis.js';

const run = promisify(execFile);
let node: RedisNode;
before(async () => {
  node = await RedisNode.start();
});
after(async () => node.stop());

test('four processes × 25 concurrent gets of a cold key run the fetcher once', async () => {
  const key = `cold:${randomUUID()}`;
  const child = join(import.meta.dirname, 'stampede-child.ts');
  const outputs = await Promise.all(
    [0, 1, 2, 3].map(() =>
      run(process.execPath, ['--unhandled-rejections=strict', '--import', 'tsx', child, String(node.port), key], { timeout: 60_000 }),
    ),
  );
  const values = outputs.flatMap((o) => JSON.parse(o.stdout) as { by: number; at: number }[]);
  assert.equal(values.length, 100);
  assert.equal((await node.cli('GET', `fetches:${key}`)).trim(), '1');
  assert.equal(new Set(values.map((v) => JSON.stringify(v))).size, 1, 'everyone got the one fetched value');
});
