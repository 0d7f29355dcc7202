// `locksmith limit`: the command runs only with a token from the shared rate limiter, which is the
// same bucket as locks.rateLimiter(NAME) in the library.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { redisBackend } from '../../src/backends/redis/index.js';
import { Locksmith } from '../../src/index.js';
import { RedisNode } from '../support/redis.js';
import { cli, ensureBuilt } from './spawn.js';

let redis: RedisNode;
before(async () => {
  ensureBuilt();
  redis = await RedisNode.start();
});
after(() => redis.stop());

test('runs the command while tokens last, then exits 75 without running it', async () => {
  const codes: (number | null)[] = [];
  const outs: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = cli('limit', 'nightly', '--rate', '2/m', '--backend', redis.url, '--', 'echo', 'ran');
    codes.push(await r.code);
    outs.push(r.out());
  }
  assert.deepEqual(codes, [0, 0, 75]);
  assert.deepEqual(outs, ['ran\n', 'ran\n', '']);
});

test('the default file backend keeps the bucket with no server: shared by every run on the host', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'locksmith-limit-'));
  try {
    const name = `nightly-${randomUUID()}`;
    const codes: (number | null)[] = [];
    // The default directory (per user), then an explicit one: two buckets of 2 tokens each.
    for (const backend of [[], [], [], ['--backend', `file://${dir}`], ['--backend', `file://${dir}`], ['--backend', `file://${dir}`]]) {
      const r = cli('limit', name, '--rate', '2/m', ...backend, '--', 'echo', 'ran');
      codes.push(await r.code);
    }
    assert.deepEqual(codes, [0, 0, 75, 0, 0, 75]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--wait waits for the refill; the library sees the same bucket', async () => {
  const client = new Redis(redis.port, '127.0.0.1');
  const locks = new Locksmith(redisBackend({ client }));
  try {
    const limiter = locks.rateLimiter('shared-bucket', { limit: 20, interval: 60_000, burst: 1 }); // a token every 3 s
    assert.equal((await limiter.take()).allowed, true); // the library empties the bucket
    const refused = cli('limit', 'shared-bucket', '--rate', '20/m', '--burst', '1', '--backend', redis.url, '--', 'echo', 'ran');
    assert.equal(await refused.code, 75);
    assert.match(refused.err(), /no token/);
    const waited = cli(
      'limit',
      'shared-bucket',
      '--rate',
      '20/m',
      '--burst',
      '1',
      '--wait',
      '10s',
      '--backend',
      redis.url,
      '--',
      'echo',
      'ran',
    );
    assert.equal(await waited.code, 0, waited.err());
    assert.equal(waited.out(), 'ran\n');
  } finally {
    await locks.close();
    client.disconnect();
  }
});

test('bad rates and bursts are usage errors', async () => {
  for (const args of [
    ['--rate', '0/s'],
    ['--rate', 'ten'],
    ['--rate', '5/x'],
    [],
    ['--rate', '5/s', '--burst', '0'],
    ['--rate', '5/s', '--ttl', '5s'],
  ]) {
    const r = cli('limit', 'x', ...args, '--backend', redis.url, '--', 'true');
    assert.equal(await r.code, 2, args.join(' '));
  }
});
