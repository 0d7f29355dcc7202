// The rate limiter as users call it: bad input before any I/O, waiting for the refill, aborting, and
// the whole point: four processes taking as fast as they can never get more than burst + rate × time,
// and get close to it (the refill rate holds within 5 %), on every backend that keeps buckets.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { memoryBackend } from '../../src/backends/memory/index.js';
import { redlockBackend } from '../../src/backends/redlock/index.js';
import { LockArgumentError, Locksmith, type LockBackend } from '../../src/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';
import { RedisNode, startCluster, stopAll } from '../support/redis.js';

const run = promisify(execFile);

/** Counts backend calls, to prove bad input never reaches the backend. */
function counted(): { backend: LockBackend; calls: () => number } {
  const real = memoryBackend();
  let calls = 0;
  const rate = {
    take: (...a: Parameters<NonNullable<LockBackend['rate']>['take']>) => ((calls += 1), real.rate!.take(...a)),
    reset: (k: string) => ((calls += 1), real.rate!.reset(k)),
  };
  return { backend: { ...real, rate }, calls: () => calls };
}

describe('rate limiter: input and waiting', () => {
  test('bad limits, costs and options are LockArgumentErrors before any I/O', async () => {
    const { backend, calls } = counted();
    const locks = new Locksmith(backend);
    for (const bad of [0, -1, 1.5, NaN, Infinity, '5', null]) {
      assert.throws(() => locks.rateLimiter('x', { limit: bad as number, interval: 1_000 }), LockArgumentError);
      assert.throws(() => locks.rateLimiter('x', { limit: 5, interval: bad as number }), LockArgumentError);
      assert.throws(() => locks.rateLimiter('x', { limit: 5, interval: 1_000, burst: bad as number }), LockArgumentError);
    }
    assert.throws(() => locks.rateLimiter('x', { limit: 5, interval: 1_000, colour: 'red' } as never), LockArgumentError);
    assert.throws(() => locks.rateLimiter('', { limit: 5, interval: 1_000 }), LockArgumentError);
    const limiter = locks.rateLimiter('x', { limit: 5, interval: 1_000, burst: 3 });
    for (const cost of [0, 4, 1.5, NaN, -2]) await assert.rejects(limiter.take({ cost }), LockArgumentError);
    await assert.rejects(limiter.take({ wait: -1 }), LockArgumentError);
    await assert.rejects(limiter.take({ signal: 'no' as never }), LockArgumentError);
    await assert.rejects(limiter.peek({ cost: 9 }), LockArgumentError);
    assert.equal(calls(), 0);
  });

  test('Redlock keeps no buckets: refused when the limiter is made, before any I/O', () => {
    const clients = [0, 1, 2].map((i) => new Redis(1 + i, '127.0.0.1', { lazyConnect: true }));
    const locks = new Locksmith(redlockBackend({ clients }));
    assert.throws(
      () => locks.rateLimiter('x', { limit: 5, interval: 1_000 }),
      (e: unknown) => e instanceof LockArgumentError && /redlock/.test(e.message),
    );
    for (const c of clients) c.disconnect();
  });

  test('a take that waits gets its token when the refill comes; one that cannot wait long enough is refused at once', async () => {
    const locks = new Locksmith(memoryBackend());
    const limiter = locks.rateLimiter('w', { limit: 10, interval: 1_000, burst: 1 });
    assert.equal((await limiter.take()).allowed, true);
    const started = performance.now();
    const short = await limiter.take({ wait: 20 });
    assert.equal(short.allowed, false);
    assert.ok(performance.now() - started < 20, 'a wait that cannot be met does not sleep');
    const waited = await limiter.take({ wait: 1_000 });
    assert.equal(waited.allowed, true);
    assert.ok(performance.now() - started >= 90, `allowed after ${Math.round(performance.now() - started)} ms`);
    assert.deepEqual(locks.stats().rateLimiters.w, { allowed: 2, refused: 1, waited: 1 });
  });

  test("an aborted wait rejects with the signal's reason", async () => {
    const limiter = new Locksmith(memoryBackend()).rateLimiter('a', { limit: 1, interval: 60_000 });
    await limiter.take();
    const ac = new AbortController();
    const pending = limiter.take({ wait: Infinity, signal: ac.signal });
    ac.abort(new Error('no longer needed'));
    await assert.rejects(pending, /no longer needed/);
  });
});

/**
 * The most allowed takes in any window beyond what the rate allows in it (must be at most the burst).
 * Each take is known only to have been granted between when it was sent and when it was answered, so
 * a window runs from a take's send to another's answer: latency can only widen it, never make a
 * correct limiter look wrong.
 */
function worstExcess(takes: [number, number][], rate: number): number {
  const bySent = [...takes].sort((a, b) => a[0] - b[0]);
  let worst = -Infinity;
  for (let i = 0; i < bySent.length; i++) {
    const answered = bySent
      .slice(i)
      .map((t) => t[1])
      .sort((a, b) => a - b);
    answered.forEach((end, r) => (worst = Math.max(worst, r + 1 - ((end - bySent[i]![0]) / 1_000) * rate)));
  }
  return worst;
}

describe('rate limiter: four processes', () => {
  const BURST = 10;
  // etcd runs at half the rate: a bucket there takes one write round trip per take, and under CI's
  // load four processes cannot offer 100 takes a second to it (the test would then measure the
  // offered load, not the limiter; a CI run saw 90.5-92.5/s). What it checks is the same.
  const rateOf = (kind: string): number => (kind === 'etcd' ? 50 : 100);
  const MS = 5_000;
  let node: RedisNode;
  let cluster: RedisNode[];
  let db: TestDatabase;
  let dir: string;
  let etcd: EtcdCluster;
  before(async () => {
    [node, cluster, db, dir, etcd] = await Promise.all([
      RedisNode.start(),
      startCluster(),
      createDatabase(),
      mkdtemp(join(tmpdir(), 'locksmith-rate-')),
      EtcdCluster.start(),
    ]);
  });
  after(async () => {
    await etcd?.stop();
    await stopAll();
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  const processes = async (kind: string, target: () => string, RATE: number): Promise<[number, number][][]> => {
    const name = `rate:${randomUUID()}`;
    const child = join(import.meta.dirname, 'child.ts');
    const outs = await Promise.all(
      [0, 1, 2, 3].map(() =>
        run(
          process.execPath,
          ['--unhandled-rejections=strict', '--import', 'tsx', child, kind, target(), name, String(RATE), String(BURST), String(MS), '8'],
          { timeout: 60_000 },
        ),
      ),
    );
    return outs.map((o) => JSON.parse(o.stdout) as [number, number][]);
  };

  for (const [kind, target] of [
    ['redis', () => String(node.port)],
    ['cluster', () => cluster.map((n) => n.port).join(',')],
    ['postgres', () => JSON.stringify(db.config)],
    ['file', () => dir],
    ['etcd', () => etcd.endpoints.join(',')],
  ] as const) {
    test(`${kind}: never more than burst + rate × time, and the rate holds within 5 %`, async () => {
      const RATE = rateOf(kind);
      const each = await processes(kind, target, RATE);
      const takes = each.flat();
      const excess = worstExcess(takes, RATE);
      assert.ok(excess <= BURST, `${excess.toFixed(2)} takes over the rate in some window (burst ${BURST})`);
      // The rate, while all four were taking (they start a little apart): the bucket may hold up to
      // the burst when the window opens, so the count lies between rate × span and that plus burst.
      const from = Math.max(...each.map((p) => p[0]![0]));
      const to = Math.min(...each.map((p) => p.at(-1)![1]));
      // A take is granted somewhere between its send and its answer. Against too many, count only
      // those surely inside the window; against too few, every one that may be inside: with takes
      // in flight for a while (an etcd bucket under four processes' compare-and-swap), counting only
      // the sure ones blamed the limiter for the takes that straddle the window's edges.
      const count = takes.filter(([sent, answered]) => sent >= from && answered <= to).length;
      const maybe = takes.filter(([sent, answered]) => answered >= from && sent <= to).length;
      const span = (to - from) / 1_000;
      const low = (count - BURST) / span;
      const high = maybe / span;
      assert.ok(span > 2, `the processes overlapped for only ${span.toFixed(2)} s`);
      assert.ok(
        low <= RATE * 1.05 && high >= RATE * 0.95,
        `${count}–${maybe} takes in ${span.toFixed(2)} s: ${low.toFixed(1)}–${high.toFixed(1)}/s`,
      );
    });
  }
});
