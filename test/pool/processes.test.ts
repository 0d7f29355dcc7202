// A pool shared by two processes on every backend that stores membership across processes: the
// members one process sets are the ones another lends from, a member lent there is not lent here,
// and a waiter in one process is woken (not polling: its safety poll is 30 s) by a release or an
// added member in the other. Memory shares a store between Locksmiths in one process only
// (test/recipes covers it).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { fileBackend } from '../../src/backends/file/index.js';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { Locksmith, type LockBackend } from '../../src/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';
import { RedisNode, startCluster, stopAll } from '../support/redis.js';
import { until } from '../support/until.js';

/** The child process (child.ts), driven by commands; `ask` resolves with a command's answer. */
function child(kind: string, target: string, pool: string): { ask: (...cmd: string[]) => Promise<unknown>; end: () => Promise<void> } {
  const proc = spawn(
    process.execPath,
    ['--unhandled-rejections=strict', '--import', 'tsx', join(import.meta.dirname, 'child.ts'), kind, target, pool],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const pending = new Map<number, (result: unknown) => void>();
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const [id, result] = JSON.parse(line) as [number, unknown];
    pending.get(id)?.(result);
  });
  let next = 0;
  return {
    ask: (...cmd) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, (result) =>
          (result as { error?: string } | null)?.error ? reject(new Error((result as { error: string }).error)) : resolve(result),
        );
        proc.stdin.write(`${JSON.stringify([id, ...cmd])}\n`);
      }),
    end: async () => {
      proc.stdin.end();
      await new Promise((resolve) => proc.once('exit', resolve));
    },
  };
}

describe('a pool shared by two processes', () => {
  let node: RedisNode;
  let cluster: RedisNode[];
  let db: TestDatabase;
  let etcd: EtcdCluster;
  const dir = mkdtempSync(join(tmpdir(), 'locksmith-pool-'));
  const ends: (() => Promise<unknown>)[] = [];
  before(async () => {
    [node, cluster, db, etcd] = await Promise.all([RedisNode.start(), startCluster(), createDatabase(), EtcdCluster.start()]);
  });
  after(async () => {
    for (const end of ends) await end();
    await stopAll();
    await db.drop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const kinds: [string, () => string, () => LockBackend][] = [
    ['file', () => dir, () => fileBackend({ dir })],
    [
      'redis',
      () => String(node.port),
      () => {
        const client = new Redis(node.port, '127.0.0.1');
        ends.push(async () => client.disconnect());
        return redisBackend({ client });
      },
    ],
    [
      'cluster',
      () => cluster.map((n) => n.port).join(','),
      () => {
        const client = new Cluster(cluster.map((n) => ({ host: '127.0.0.1', port: n.port })));
        ends.push(async () => client.disconnect());
        return redisBackend({ client });
      },
    ],
    [
      'postgres',
      () => JSON.stringify(db.config),
      () => {
        const pool = db.pool({ max: 4 });
        ends.push(() => pool.end());
        return postgresBackend({ pool });
      },
    ],
    ['etcd', () => etcd.endpoints.join(','), () => etcdBackend({ client: etcd.client(), leaseTtl: 30_000 })],
  ];

  for (const [kind, target, backend] of kinds) {
    test(`${kind}: one list, one holder per member, waiters woken across processes`, async () => {
      const name = `p-${randomUUID().slice(0, 8)}`;
      const locks = new Locksmith(backend(), { ttl: 30_000, backoff: { initial: 30_000, max: 30_000 } });
      const other = child(kind, target(), name);
      try {
        const pool = locks.pool(name);
        await pool.assign(['a']);
        assert.equal(await other.ask('acquire'), 'a', 'the other process lends from the list set here');
        assert.equal(await pool.tryAcquire(), null);
        const status = await pool.status();
        assert.deepEqual([status.total, status.held, status.free], [1, 1, 0]);
        assert.equal(status.members[0]!.holders[0]!.owner, await other.ask('owner'));

        const waiting = pool.acquire({ wait: 20_000 });
        await until(async () => locks.stats().waiting === 1);
        const released = performance.now();
        assert.equal(await other.ask('release'), true);
        const mine = await waiting;
        assert.equal(mine.member, 'a');
        assert.ok(performance.now() - released < 10_000, 'woken by the release, not by the 30 s poll');

        const theirs = other.ask('acquire');
        await until(async () => (await other.ask('waiting')) === 1);
        await pool.add(['b']);
        assert.equal(await theirs, 'b', 'woken by the member added here');

        assert.equal(await pool.remove('b'), 1);
        assert.deepEqual(await other.ask('members'), ['a']);
        assert.equal(await other.ask('release'), true, 'a member removed while lent stays lent until released');
        assert.equal(await pool.tryAcquire({ member: 'b' }), null);
        await mine.release();
        await pool.clear();
      } finally {
        await other.end();
        await locks.close();
      }
    });
  }
});
