// Pools, elections, the stampede guard and the decorators, on every target of the conformance suite
// (test/conformance/targets.ts); each <backend>.test.ts here runs it on one group of targets.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { LockArgumentError, Locksmith, memoryCacheStore, type LockBackend, type LocksmithOptions } from '../../src/index.js';
import type { Target } from '../conformance/targets.js';
import { poolTests } from './pool.js';

export function recipes(target: Target): void {
  describe(`recipes on ${target.name}`, () => {
    before(async () => target.before?.());
    after(async () => target.after?.());
    const open: Locksmith[] = [];
    afterEach(async () => {
      await Promise.all(open.splice(0).map((l) => l.close()));
    });
    async function client(options?: LocksmithOptions, wrap?: (b: LockBackend) => LockBackend): Promise<Locksmith> {
      const backend = await target.backend();
      const locks = new Locksmith(wrap ? wrap(backend) : backend, { ttl: 5_000, wait: 10_000, ...options });
      open.push(locks);
      return locks;
    }
    const name = (): string => `r-${randomUUID().slice(0, 8)}`;

    poolTests(target, client, name);

    describe('election', () => {
      test('one leader at a time; resign hands over; fences rise; events fire', async () => {
        const [a, b] = [await client(), await client()];
        const topic = name();
        const ea = a.election(topic, { value: 'node-a' });
        const eb = b.election(topic, { value: 'node-b' });
        const events: string[] = [];
        ea.on('elected', () => events.push('a elected')).on('demoted', (why) =>
          events.push(`a demoted: ${why === 'resigned' ? why : why.code}`),
        );
        eb.on('elected', () => events.push('b elected'));
        const leaderA = await ea.campaign();
        assert.equal(ea.isLeader, true);
        const pending = eb.campaign();
        await delay(30);
        assert.equal(eb.isLeader, false);
        const seen = await eb.leader();
        assert.equal(seen?.value, 'node-a');
        assert.equal(seen?.fence, leaderA.fence);
        await ea.resign();
        const leaderB = await pending;
        assert.ok(leaderB.fence > leaderA.fence);
        assert.equal((await ea.leader())?.value, 'node-b');
        assert.deepEqual(events, ['a elected', 'a demoted: resigned', 'b elected']);
        await eb.resign();
        assert.equal(await ea.leader(), null);
        assert.deepEqual(a.stats().elections[topic], { elected: 1, demoted: 0, resigned: 1 });
      });

      test('a leader whose renewals fail is demoted within one ttl, and another takes over after it', async () => {
        let down = false;
        const a = await client({}, (backend) => ({
          ...backend,
          waitForChange: backend.waitForChange?.bind(backend),
          extend: (key, owner, ttl) => (down ? Promise.reject(new Error('backend unreachable')) : backend.extend(key, owner, ttl)),
        }));
        a.on('error', () => {});
        const b = await client();
        const topic = name();
        const ttl = 400;
        const ea = a.election(topic, { value: 'a', ttl });
        const eb = b.election(topic, { value: 'b', ttl });
        await ea.campaign();
        // The end of a's last lease, as a's own clock saw it (each renewal moves it).
        let aLeaseEnds = ea.expiresAt!;
        a.on('extended', (e) => (aLeaseEnds = e.expiresAt));
        const demoted = new Promise<number>((resolve) => ea.on('demoted', () => resolve(performance.now())));
        const elected = eb.campaign().then(() => ({ at: performance.now(), wall: Date.now() }));
        await delay(50);
        const failedAt = performance.now();
        down = true;
        // a hears of its loss from its lease's deadline timer, which (as every timer of a held lock) does
        // not keep the process alive: once b is elected nothing else would, so the test holds it open.
        const open = setInterval(() => undefined, 1_000);
        const [demotedAt, won] = await Promise.all([demoted, elected]).finally(() => clearInterval(open));
        assert.ok(demotedAt - failedAt <= ttl + 50, `told after ${(demotedAt - failedAt).toFixed(0)} ms`);
        assert.ok(won.wall >= aLeaseEnds, `never two leaders: b elected ${aLeaseEnds - won.wall} ms before a's lease ended`);
        assert.ok(won.at - failedAt < ttl * 3, `taken over after ${(won.at - failedAt).toFixed(0)} ms`);
        assert.equal(ea.isLeader, false);
        assert.equal(eb.isLeader, true);
        await eb.resign();
      });

      test('bad election input is a LockArgumentError', async () => {
        const locks = await client();
        for (const o of [{}, { value: '' }, { value: 'x'.repeat(201) }, { value: 5 }, { value: 'a\nb' }, { value: 'v', term: 1 }]) {
          assert.throws(() => locks.election('e', o as never), LockArgumentError, JSON.stringify(o));
        }
        await assert.rejects(locks.election(name(), { value: 'v', ttl: -5 }).campaign(), LockArgumentError);
        await assert.rejects(locks.election(name(), { value: 'v' }).campaign({ wait: 1 } as never), LockArgumentError);
      });
    });

    describe('stampede guard', () => {
      test('100 concurrent gets of a cold key from 4 clients run the fetcher once', async () => {
        const clients = await Promise.all([client(), client(), client(), client()]);
        const store = memoryCacheStore(); // shared, as Redis would be between processes
        const guards = clients.map((c) => c.stampede({ freshFor: 10_000, store }));
        const key = name();
        let fetches = 0;
        const values = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            guards[i % 4]!.get(key, async () => {
              fetches += 1;
              await delay(50);
              return 'fresh value';
            }),
          ),
        );
        assert.equal(fetches, 1);
        assert.ok(values.every((v) => v === 'fresh value'));
        const shared = clients.reduce((n, c) => n + c.stats().stampedes.default!.shared, 0);
        assert.equal(shared, 99);
      });

      test('fresh values are served; stale ones refresh once, or at once with returnStale', async () => {
        const locks = await client();
        const store = memoryCacheStore();
        const guard = locks.stampede({ freshFor: 100, staleFor: 10_000, name: 'swr', store });
        const key = name();
        let n = 0;
        let gate: Promise<void> = Promise.resolve();
        const fetcher = async (): Promise<number> => {
          await gate;
          return ++n;
        };
        assert.equal(await guard.get(key, fetcher), 1);
        assert.equal(await guard.get(key, fetcher), 1, 'fresh: no fetch');
        await delay(120);
        // The refresh is held at a gate: returnStale must answer without it.
        let open!: () => void;
        gate = new Promise((resolve) => (open = resolve));
        assert.equal(await guard.get(key, fetcher, { returnStale: true }), 1, 'stale value at once, refresh still pending');
        assert.equal(n, 1);
        open();
        for (let i = 0; (await store.get(key))?.value !== 2; i++) {
          assert.ok(i < 500, 'the background refresh landed');
          await delay(10);
        }
        assert.equal(await guard.get(key, fetcher), 2, 'the refreshed value is served fresh');
        await delay(120);
        assert.equal(await guard.get(key, fetcher), 3, 'without returnStale: waits for the refresh');
        assert.deepEqual(locks.stats().stampedes.swr, { hits: 2, staleHits: 1, misses: 2, fetches: 3, fetchErrors: 0, shared: 0 });
      });

      test('a failing fetcher does not poison the cache; its caller gets the error', async () => {
        const locks = await client();
        const guard = locks.stampede({ freshFor: 50, staleFor: 10_000 });
        const key = name();
        const boom = new Error('upstream down');
        await assert.rejects(
          guard.get(key, () => Promise.reject(boom)),
          (e: unknown) => e === boom,
        );
        assert.equal(await guard.get(key, () => 'ok'), 'ok', 'nothing cached by the failure');
        await delay(60);
        await assert.rejects(
          guard.get(key, () => Promise.reject(boom)),
          (e: unknown) => e === boom,
        );
        assert.equal(await guard.get(key, () => Promise.reject(boom), { staleOnError: true }), 'ok', 'stale fallback');
      });

      test('bad guard input is a LockArgumentError', async () => {
        const locks = await client();
        for (const o of [
          {},
          { freshFor: 0 },
          { freshFor: 1.5 },
          { freshFor: 10, staleFor: -1 },
          { freshFor: 10, store: {} },
          { freshFor: 10, ttl: 5 },
        ]) {
          assert.throws(() => locks.stampede(o as never), LockArgumentError, JSON.stringify(o));
        }
        const guard = locks.stampede({ freshFor: 10 });
        await assert.rejects(
          guard.get('', () => 1),
          LockArgumentError,
        );
        await assert.rejects(guard.get('k', 'x' as never), LockArgumentError);
        await assert.rejects(
          guard.get('k', () => 1, { wait: NaN }),
          LockArgumentError,
        );
        await assert.rejects(
          guard.get('k', () => 1, { returnStale: 'yes' } as never),
          LockArgumentError,
        );
      });
    });

    describe('decorators', () => {
      test('@locks.locked serializes by key; @guard.cached caches by key', async () => {
        const locks = await client();
        const guard = locks.stampede({ freshFor: 10_000 });
        const prefix = name();
        let inside = 0;
        let peak = 0;
        let quotes = 0;
        class Service {
          factor = 2;
          @locks.locked((userId: string) => `${prefix}:user:${userId}`)
          async update(userId: string, amount: number): Promise<number> {
            inside += 1;
            peak = Math.max(peak, inside);
            await delay(5);
            inside -= 1;
            return amount * this.factor;
          }
          @guard.cached((symbol: string) => `${prefix}:quote:${symbol}`)
          async quote(symbol: string): Promise<string> {
            quotes += 1;
            await delay(5);
            return `${symbol}@${this.factor}`;
          }
        }
        const s = new Service();
        const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.update('42', i)));
        assert.deepEqual(results, [0, 2, 4, 6, 8, 10, 12, 14]);
        assert.equal(peak, 1);
        assert.deepEqual(await Promise.all([s.quote('ACME'), s.quote('ACME'), s.quote('INIT')]), ['ACME@2', 'ACME@2', 'INIT@2']);
        assert.equal(quotes, 2);
      });
    });
  });
}
