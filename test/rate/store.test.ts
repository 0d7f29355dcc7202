// The backends' rate stores (GCRA, atomic on the backend's clock), checked the same way on each:
// memory, file, Redis, Redis Cluster, PostgreSQL and etcd, on servers the test starts, databases it makes
// or a directory of its own.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import type { LockBackend } from '../../src/backend.js';
import type { RateRequest, RateStore } from '../../src/backends/shared/gcra.js';
import { fileBackend } from '../../src/backends/file/index.js';
import { memoryBackend } from '../../src/backends/memory/index.js';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';
import { RedisNode, startCluster, stopAll } from '../support/redis.js';

interface Target {
  name: string;
  open: () => Promise<{ backend: LockBackend; keys: () => Promise<number>; close: () => Promise<void> }>;
  /** How long after its TAT a full bucket may still have a key (default 5 s). */
  gone?: number;
}

/** Live keys: SCAN skips expired ones (DBSIZE counts keys not yet evicted). */
async function scanCount(client: Redis): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'COUNT', 1000);
    cursor = next;
    n += keys.length;
  } while (cursor !== '0');
  return n;
}

const req = (key: string, over: Partial<RateRequest> = {}): RateRequest => ({
  key,
  limit: 5,
  interval: 1_000,
  burst: 5,
  cost: 1,
  peek: false,
  ...over,
});

/**
 * A token every 2 s: none comes back while the test's takes run, however slow the backend answers
 * (an etcd take under CI's load is a write of tens of ms; at 1 s per 5 tokens a sixth came back).
 */
const SLOW = { interval: 10_000 };

let node: RedisNode;
let db: TestDatabase;
const targets: Target[] = [
  {
    name: 'memory',
    open: () => {
      const backend = memoryBackend();
      return Promise.resolve({ backend, keys: () => Promise.resolve(backend.store.rates.size), close: () => backend.close() });
    },
  },
  {
    name: 'file',
    open: async () => {
      const dir = await mkdtemp(join(tmpdir(), 'locksmith-rate-'));
      const keys = async (): Promise<number> => (await readdir(dir)).filter((n) => n.startsWith('gone%3a') && n.endsWith('.rate')).length;
      const backend = fileBackend({ dir });
      return { backend, keys, close: async () => (await backend.close(), await rm(dir, { recursive: true, force: true })) };
    },
  },
  {
    name: 'redis',
    open: () => {
      const client = new Redis(node.port, '127.0.0.1');
      return Promise.resolve({
        backend: redisBackend({ client }),
        keys: () => scanCount(client),
        close: async () => void client.disconnect(),
      });
    },
  },
  {
    name: 'redis cluster',
    open: async () => {
      const nodes = await startCluster();
      const client = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
      const count = async (): Promise<number> => (await Promise.all(client.nodes('master').map(scanCount))).reduce((a, b) => a + b, 0);
      return { backend: redisBackend({ client }), keys: count, close: async () => void client.disconnect() };
    },
  },
  {
    name: 'postgres',
    open: () => {
      const pool = db.pool({ max: 4 });
      const keys = async (): Promise<number> => {
        // Rows of the test's buckets full again for a while: what the sweep must have taken (the
        // buckets that trigger the sweep may outlive the last one).
        const { rows } = await pool.query<{ n: string }>(
          "SELECT count(*) AS n FROM locksmith_fence_rate WHERE key LIKE 'gone:%' AND tat < extract(epoch FROM clock_timestamp()) * 1000 - 100",
        );
        return Number(rows[0]?.n);
      };
      return Promise.resolve({ backend: postgresBackend({ pool }), keys, close: () => pool.end() });
    },
  },
  {
    name: 'etcd',
    // A bucket's key is on a lease that ends up to 3 s after its TAT; etcd revokes expired leases
    // every 500 ms.
    gone: 10_000,
    open: async () => {
      const cluster = await EtcdCluster.start();
      const client = cluster.client();
      const keys = async (): Promise<number> => Number(await client.getAll().prefix('locksmith/%rate/gone').count());
      return { backend: etcdBackend({ client }), keys, close: () => cluster.stop() };
    },
  },
];

before(async () => {
  node = await RedisNode.start();
  db = await createDatabase();
});
after(async () => {
  await stopAll();
  await db.drop();
});

async function until(condition: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(20);
  }
}

for (const target of targets) {
  describe(`rate store: ${target.name}`, () => {
    let opened: Awaited<ReturnType<Target['open']>>;
    let rate: RateStore;
    before(async () => {
      opened = await target.open();
      rate = opened.backend.rate!;
    });
    after(() => opened.close());

    test('a full bucket gives `burst` tokens, then refuses with the time to the next one', async () => {
      const remaining: number[] = [];
      for (let i = 0; i < 5; i++) {
        const d = await rate.take(req('burst', SLOW));
        assert.equal(d.allowed, true);
        assert.equal(d.retryAfter, 0);
        remaining.push(d.remaining);
      }
      assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
      const refused = await rate.take(req('burst', SLOW));
      assert.equal(refused.allowed, false);
      assert.equal(refused.remaining, 0);
      assert.ok(refused.retryAfter > 0 && refused.retryAfter <= 2_000, `retryAfter ${refused.retryAfter}`);
      assert.ok(
        refused.resetAt > Date.now() + 5_000 && refused.resetAt <= Date.now() + 10_100,
        `resetAt in ${refused.resetAt - Date.now()} ms`,
      );
      await rate.reset('burst'); // a slow bucket: the last test counts what is left
    });

    test('peek consumes nothing; a cost above what is left is refused whole', async () => {
      assert.equal((await rate.take(req('peek', { ...SLOW, cost: 3 }))).remaining, 2);
      const look = await rate.take(req('peek', { ...SLOW, cost: 2, peek: true }));
      assert.deepEqual([look.allowed, look.remaining], [true, 2]);
      const big = await rate.take(req('peek', { ...SLOW, cost: 3 }));
      assert.deepEqual([big.allowed, big.remaining], [false, 2]);
      assert.equal((await rate.take(req('peek', { ...SLOW, cost: 2 }))).allowed, true, 'the refused take consumed nothing');
      await rate.reset('peek');
    });

    test('tokens come back at the rate; reset fills the bucket', async () => {
      for (let i = 0; i < 5; i++) await rate.take(req('refill'));
      const refused = await rate.take(req('refill'));
      await delay(refused.retryAfter + 5);
      assert.equal((await rate.take(req('refill'))).allowed, true);
      await rate.reset('refill');
      assert.equal((await rate.take(req('refill'))).remaining, 4);
    });

    test('concurrent takes never admit more than the burst', async () => {
      const decisions = await Promise.all(
        Array.from({ length: 60 }, () => rate.take(req('race', { limit: 10, interval: 60_000, burst: 10 }))),
      );
      assert.equal(decisions.filter((d) => d.allowed).length, 10);
      await rate.reset('race'); // a minute-long bucket: the next test counts what is left
    });

    test('a bucket leaves nothing behind once it is full again', async () => {
      for (let i = 0; i < 200; i++) await rate.take(req(`gone:${i}`, { limit: 10, interval: 100, burst: 10 }));
      await delay(150);
      await delay(100);
      // PostgreSQL and the file backend sweep every 256th take; the others forget a bucket by themselves.
      for (let i = 0; i < 256; i++) await rate.take(req(`sweep:${i}`, { limit: 1_000, interval: 1, burst: 1 }));
      await until(async () => (await opened.keys()) === 0, target.gone);
    });
  });
}

describe('rate store: file, on a shared host', () => {
  test('a planted symlink is refused and its target never written; a bucket not yet full survives the sweep', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'locksmith-rate-'));
    const backend = fileBackend({ dir });
    try {
      const victim = join(dir, 'victim');
      await writeFile(victim, 'precious');
      await symlink(victim, join(dir, 'planted.lock.rate'));
      await assert.rejects(backend.rate!.take(req('planted')), /symlink/);
      assert.equal(await readFile(victim, 'utf8'), 'precious');
      // A minute-long bucket, half taken, then enough takes on other buckets for a sweep.
      await backend.rate!.take(req('kept', { limit: 2, interval: 60_000, burst: 2 }));
      for (let i = 0; i < 256; i++) await backend.rate!.take(req(`other:${i}`, { limit: 1_000, interval: 1, burst: 1 }));
      assert.equal((await backend.rate!.take(req('kept', { limit: 2, interval: 60_000, burst: 2, peek: true }))).remaining, 1);
    } finally {
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('rate store: redis, a key that is not a bucket', () => {
  test('is an error naming the limiter, and is never overwritten', async () => {
    const client = new Redis(node.port, '127.0.0.1');
    const rate = redisBackend({ client }).rate!;
    try {
      const cases: [string, () => Promise<unknown>][] = [
        ['no-expiry', () => client.set('locksmith:{no-expiry}:rate', '0.5')],
        ['not-a-number', () => client.set('locksmith:{not-a-number}:rate', 'hello', 'PX', 60_000)],
        ['a-list', () => client.rpush('locksmith:{a-list}:rate', 'x')],
      ];
      for (const [name, plant] of cases) {
        await plant();
        const before = await client.dump(`locksmith:{${name}}:rate`);
        for (const peek of [false, true]) {
          await assert.rejects(rate.take(req(name, { peek })), (error: Error) => {
            assert.equal(error.name, 'LockAcquisitionError');
            assert.match(error.message, new RegExp(`"${name}": Redis refused rate (take|peek)`));
            return true;
          });
        }
        assert.deepEqual(await client.dump(`locksmith:{${name}}:rate`), before, `${name} untouched`);
      }
    } finally {
      client.disconnect();
    }
  });

  test('a rate of many tokens a ms keeps its fractions: the burst, then one token per T', async () => {
    const client = new Redis(node.port, '127.0.0.1');
    const rate = redisBackend({ client }).rate!;
    try {
      // T = 10/3 ms: every take's TAT falls between Redis's ms ticks. A 1 000-token burst and 3 000
      // takes at once: unless they take more than 6 s, some are refused.
      const fast = { limit: 3, interval: 10, burst: 1_000 };
      const t = 10 / 3;
      assert.equal((await rate.take(req('fine', fast))).remaining, 999);
      const t0 = performance.now();
      const decisions = await Promise.all(Array.from({ length: 3_000 }, () => rate.take(req('fine', fast))));
      const elapsed = performance.now() - t0;
      const allowed = decisions.filter((d) => d.allowed);
      // The rest of the burst, plus one token per T while the takes ran (and one for the ms the
      // server's clock rounds to), never more.
      assert.ok(allowed.length >= 999, `allowed ${allowed.length}`);
      assert.ok(allowed.length <= 999 + Math.ceil(elapsed / t) + 1, `allowed ${allowed.length} in ${elapsed.toFixed(1)} ms`);
      const refused = decisions.find((d) => !d.allowed);
      assert.ok(refused, `none of ${decisions.length} refused in ${elapsed.toFixed(1)} ms`);
      assert.ok(refused.retryAfter >= 1 && refused.retryAfter <= Math.ceil(t), `a refusal waits at most T: ${refused.retryAfter}`);
      assert.ok(refused.remaining === 0, `remaining ${refused.remaining}`);
    } finally {
      client.disconnect();
    }
  });
});
