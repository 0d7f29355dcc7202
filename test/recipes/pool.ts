// Pools on one target (called from suite.ts): membership kept by the backend and seen by every client
// (each client is a backend instance of its own, as another process would have), lending one holder
// per member, waiting woken rather than polling, members removed while lent, status, bad input.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { LockArgumentError, LockTimeoutError, Locksmith, type LockBackend, type LocksmithOptions } from '../../src/index.js';
import type { Target } from '../conformance/targets.js';

type Client = (options?: LocksmithOptions, wrap?: (b: LockBackend) => LockBackend) => Promise<Locksmith>;

/** Resolves once `condition` holds (checked every 5 ms), or rejects after `ms`. */
async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(5);
  }
}

/** A safety poll far longer than any test: a wait that ends in time was woken. */
const NO_POLL: LocksmithOptions = { backoff: { initial: 30_000, max: 30_000 } };

export function poolTests(target: Target, client: Client, name: () => string): void {
  describe('pool', () => {
    let stored = true;
    let wakes = true;
    before(async () => {
      const probe = await target.backend();
      stored = probe.pools !== undefined;
      wakes = probe.capabilities.wake;
      await probe.close();
    });
    const NOT_STORED = 'this backend keeps no pool membership (each Pool keeps its own list)';

    test('membership lives in the backend: every client sees add, remove, assign and clear', async (t) => {
      if (!stored) return t.skip(NOT_STORED);
      const [a, b] = [await client(), await client()];
      const pool = name();
      const pa = a.pool(pool, { members: ['gpu0', 'gpu1'] });
      const pb = b.pool(pool);
      assert.deepEqual(await pa.members(), ['gpu0', 'gpu1']);
      assert.deepEqual(await pb.members(), ['gpu0', 'gpu1']);
      assert.equal(await pb.add(['gpu2', 'gpu1']), 1);
      assert.deepEqual(await pa.members(), ['gpu0', 'gpu1', 'gpu2']);
      assert.equal(await pa.remove(['gpu0', 'nope']), 1);
      assert.deepEqual(await pb.members(), ['gpu1', 'gpu2']);
      await pb.assign(['x', 'y', 'gpu2']);
      assert.deepEqual(await pa.members(), ['gpu2', 'x', 'y']);
      await pa.clear();
      assert.deepEqual(await pb.members(), []);
      assert.equal(await pb.tryAcquire(), null);
    });

    test('20 concurrent allocators on 3 clients never share a member, and all finish', async () => {
      const clients = await Promise.all([client(), client(), client()]);
      const pool = name();
      const members = ['gpu0', 'gpu1', 'gpu2'];
      const pools = clients.map((c) => c.pool(pool, { members }));
      const holding = new Map<string, number>();
      let overlaps = 0;
      let done = 0;
      await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          for (let round = 0; round < 3; round++) {
            const lease = await pools[i % 3]!.acquire({ wait: 30_000 });
            holding.set(lease.member, (holding.get(lease.member) ?? 0) + 1);
            if (holding.get(lease.member)! > 1) overlaps += 1;
            await delay(2);
            holding.set(lease.member, holding.get(lease.member)! - 1);
            await lease.release();
            done += 1;
          }
        }),
      );
      assert.equal(overlaps, 0);
      assert.equal(done, 60);
      const s = clients[0].stats().pools[pool]!;
      assert.equal(s.acquired, s.released);
      assert.ok(s.acquired > 0);
    });

    test('allocation spreads; a named member is lent when free and waited for when not', async () => {
      const locks = await client();
      const p = locks.pool(name(), { members: ['a', 'b', 'c', 'd'] });
      const firsts = new Set<string>();
      for (let i = 0; i < 20; i++) {
        const lease = await p.acquire();
        firsts.add(lease.member);
        await lease.release();
      }
      assert.ok(firsts.size >= 2, `always ${[...firsts].join()}`);
      const b = await p.acquire({ member: 'b' });
      assert.equal(b.member, 'b');
      assert.equal(await p.tryAcquire({ member: 'b' }), null);
      await assert.rejects(p.acquire({ member: 'b', wait: 50 }), LockTimeoutError);
      const waiting = p.acquire({ member: 'b', wait: 5_000 });
      await until(() => locks.stats().waiting === 1);
      await b.release();
      const again = await waiting;
      assert.equal(again.member, 'b');
      assert.ok(again.fence > b.fence);
      const rest = await Promise.all([p.acquire(), p.acquire(), p.acquire()]);
      assert.deepEqual(rest.map((l) => l.member).sort(), ['a', 'c', 'd']);
      assert.equal(await p.tryAcquire(), null);
      await assert.rejects(p.acquire({ wait: 50 }), LockTimeoutError);
      await Promise.all([again, ...rest].map((l) => l.release()));
      assert.equal(locks.stats().pools[p.name]!.timeouts, 2);
    });

    test('a waiter for any member is woken by a release in another client, and by a member added there', async (t) => {
      if (!stored || !wakes) return t.skip(stored ? 'this backend does not wake waiters' : NOT_STORED);
      const [a, b] = [await client(NO_POLL), await client(NO_POLL)];
      const pool = name();
      const pa = a.pool(pool, { members: ['only'] });
      const pb = b.pool(pool);
      await pa.members();
      const held = await pb.acquire();
      const first = pa.acquire({ wait: 20_000 });
      await until(() => a.stats().waiting === 1);
      await held.release();
      const got = await first;
      assert.equal(got.member, 'only');
      const second = pa.acquire({ wait: 20_000 });
      await until(() => a.stats().waiting === 1);
      await pb.add(['new']);
      const added = await second;
      assert.equal(added.member, 'new');
      await Promise.all([got.release(), added.release()]);
    });

    test('a member removed while lent stays lent until released, then is gone', async () => {
      const locks = await client();
      const p = locks.pool(name(), { members: ['keep', 'drop'] });
      const lease = await p.acquire({ member: 'drop' });
      assert.equal(await p.remove('drop'), 1);
      assert.deepEqual(await p.members(), ['keep']);
      assert.equal(lease.held, true);
      await lease.extend();
      assert.equal(lease.signal.aborted, false);
      await lease.release();
      assert.equal(await p.tryAcquire({ member: 'drop' }), null);
      const status = await p.status();
      assert.deepEqual(
        status.members.map((m) => m.member),
        ['keep'],
      );
      assert.equal(status.total, 1);
    });

    test('status() counts members, free and held, with each holder', async () => {
      const locks = await client();
      const p = locks.pool(name(), { members: ['m0', 'm1', 'm2'] });
      const lease = await p.acquire({ member: 'm1' });
      const s = await p.status();
      assert.equal(s.total, 3);
      assert.equal(s.held, 1);
      assert.equal(s.free, 2);
      const m1 = s.members.find((m) => m.member === 'm1')!;
      assert.equal(m1.held, true);
      assert.equal(m1.holders.length, 1);
      assert.equal(m1.holders[0]!.fence, lease.fence);
      assert.equal(m1.holders[0]!.owner, lease.lock.owner);
      await lease.release();
      assert.equal((await p.status()).free, 3);
    });

    test('bad input is a LockArgumentError before any I/O', async () => {
      let calls = 0;
      const locks = await client({}, (backend) => countCalls(backend, () => (calls += 1)));
      const huge = 'x'.repeat(300);
      for (const o of [{ members: 'a' }, { members: [''] }, { members: ['a', 'a'] }, { members: [1] }, { members: [huge] }, { size: 2 }]) {
        assert.throws(() => locks.pool(name(), o as never), LockArgumentError, JSON.stringify(o));
      }
      assert.throws(() => locks.pool(name(), { members: Array.from({ length: 10_001 }, (_, i) => `m${i}`) }), LockArgumentError);
      assert.throws(() => locks.pool('', {}), LockArgumentError);
      assert.throws(() => locks.pool(name(), { members: ['a\u0000b'] }), LockArgumentError);
      assert.throws(() => locks.pool(name(), { members: ['\ud800'] }), LockArgumentError);
      const p = locks.pool(name());
      for (const bad of [[''], 'a\nb', [7], ['a', 'a'], null]) {
        await assert.rejects(p.add(bad as never), LockArgumentError);
        await assert.rejects(p.remove(bad as never), LockArgumentError);
        await assert.rejects(p.assign(bad as never), LockArgumentError);
      }
      await assert.rejects(p.acquire({ wait: -1 }), LockArgumentError);
      await assert.rejects(p.acquire({ ttl: 0 }), LockArgumentError);
      await assert.rejects(p.acquire({ member: '' }), LockArgumentError);
      await assert.rejects(p.acquire({ signal: 'no' } as never), LockArgumentError);
      await assert.rejects(p.acquire({ colour: 'red' } as never), LockArgumentError);
      await assert.rejects(p.tryAcquire({ wait: 5 } as never), LockArgumentError);
      await assert.rejects(p.tryAcquire({ autoRenew: 'yes' } as never), LockArgumentError);
      assert.equal(calls, 0);
    });
  });
}

/** `backend` with every call (locks and pool store) counted. */
function countCalls(backend: LockBackend, count: () => void): LockBackend {
  const wrap =
    <A extends unknown[], R>(f: (...a: A) => R) =>
    (...a: A): R => {
      count();
      return f(...a);
    };
  const p = backend.pools;
  return {
    ...backend,
    acquire: wrap((r) => backend.acquire(r)),
    inspect: wrap((k) => backend.inspect(k)),
    ...(p && {
      pools: {
        add: wrap((pool, m, max) => p.add(pool, m, max)),
        remove: wrap((pool, m) => p.remove(pool, m)),
        assign: wrap((pool, m) => p.assign(pool, m)),
        members: wrap((pool) => p.members(pool)),
        notify: wrap((pool) => p.notify(pool)),
      },
    }),
  };
}
