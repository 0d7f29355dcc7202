// One behaviour suite for every backend. A target (targets.ts) hands out fresh backend instances that
// share state (like separate processes talking to one server); everything here goes through the public
// API. Cross-backend properties use the targets' hooks (forget, crashHolder); a capability or hook a
// target lacks is a t.skip, never a silent pass.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  DeadlockError,
  Locksmith,
  LockArgumentError,
  LockError,
  LockExpiredError,
  LockReleaseError,
  LockTimeoutError,
  type LockBackend,
  type LocksmithOptions,
} from '../../src/index.js';
import type { Target } from './targets.js';

export type { Target as ConformanceTarget };

/** Counts backend calls, to prove that bad input is rejected before any I/O. */
function counting(backend: LockBackend): { backend: LockBackend; calls: (method?: string) => number } {
  const calls = new Map<string | symbol, number>();
  const counted = new Proxy(backend, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'close' || prop === 'onLost') return value; // registering a listener is no I/O
      return (...args: unknown[]) => {
        calls.set(prop, (calls.get(prop) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const total = (): number => [...calls.values()].reduce((a, b) => a + b, 0);
  return { backend: counted, calls: (method) => (method === undefined ? total() : (calls.get(method) ?? 0)) };
}

/** Resolves once `condition` holds (checked every 5 ms), or rejects after `ms`. */
async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(5);
  }
}

/** Resolves when `signal` aborts, or rejects after `ms`. */
function aborted(signal: AbortSignal, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason);
    const timer = setTimeout(() => reject(new Error(`signal did not abort within ${ms} ms`)), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });
}

export function conformance(target: Target): void {
  describe(`conformance: ${target.name}`, () => {
    const open: Locksmith[] = [];
    let capabilities: LockBackend['capabilities'];

    before(async () => {
      await target.before?.();
      const probe = await target.backend();
      capabilities = probe.capabilities;
      await probe.close();
    });
    after(async () => {
      await target.after?.();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((l) => l.close()));
    });

    async function client(options?: LocksmithOptions): Promise<Locksmith> {
      const locks = new Locksmith(await target.backend(), { ttl: 5_000, wait: 5_000, ...options });
      open.push(locks);
      return locks;
    }
    /** A client whose backend calls are counted: a test waits for its next attempt, not a fixed time. */
    async function counted(options?: LocksmithOptions): Promise<{ locks: Locksmith; attempts: () => number }> {
      const { backend, calls } = counting(await target.backend());
      const locks = new Locksmith(backend, { ttl: 5_000, wait: 5_000, ...options });
      open.push(locks);
      return { locks, attempts: () => calls('acquire') };
    }
    const name = (): string => `conf:${randomUUID()}`;

    describe('exclusive locks', () => {
      test('status(key, owner?) says free, held by that owner, or unavailable', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        assert.equal(await b.status(key), 'free');
        const lock = await a.acquire(key);
        assert.equal(await b.status(key, lock.owner), 'held');
        assert.equal(await b.status(key, 'someone-else'), 'unavailable');
        assert.equal(await b.status(key), 'unavailable');
        await lock.release();
        assert.equal(await b.status(key, lock.owner), 'free');
        await assert.rejects(b.status('', 'x'), LockArgumentError);
        await assert.rejects(b.status(key, 'bad\nowner'), LockArgumentError);
      });

      test('one holder at a time; inspect shows it; release frees it', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lock = await a.acquire(key);
        assert.equal(lock.key, key);
        assert.equal(typeof lock.owner, 'string');
        assert.ok(lock.owner.length >= 16, 'owner is a random token');
        assert.equal(typeof lock.fence, 'bigint');
        assert.ok(lock.expiresAt > Date.now() && lock.expiresAt <= Date.now() + 5_000);
        assert.equal(lock.held, true);
        assert.equal(await b.tryAcquire(key), null);
        const info = await b.inspect(key);
        assert.ok(info);
        assert.equal(info.mode, 'exclusive');
        assert.deepEqual(
          info.holders.map((h) => [h.owner, h.fence]),
          [[lock.owner, lock.fence]],
        );
        assert.ok(await b.isLocked(key));
        await lock.release();
        assert.equal(lock.held, false);
        assert.equal(await b.inspect(key), null);
        assert.equal(await b.isLocked(key), false);
        const again = await b.tryAcquire(key);
        assert.ok(again);
        await again.release();
      });

      test('owners are random and fences strictly increase across holders and clients', async () => {
        const clients = [await client(), await client(), await client()];
        const key = name();
        const owners = new Set<string>();
        let last = -1n;
        for (let i = 0; i < 12; i++) {
          const lock = await clients[i % 3]!.acquire(key);
          assert.ok(lock.fence > last, `fence ${lock.fence} after ${last}`);
          last = lock.fence;
          owners.add(lock.owner);
          await lock.release();
        }
        assert.equal(owners.size, 12);
      });

      test('tryAcquire never waits and acquire with wait 0 tries once', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lock = await a.acquire(key);
        const t0 = performance.now();
        assert.equal(await b.tryAcquire(key), null);
        await assert.rejects(b.acquire(key, { wait: 0 }), (e: unknown) => {
          assert.ok(e instanceof LockTimeoutError);
          assert.equal(e.code, 'ERR_LOCK_TIMEOUT');
          assert.equal(e.key, key);
          return true;
        });
        assert.ok(performance.now() - t0 < 1_000);
        await lock.release();
      });

      test('a waiter gets the lock when it is released', async () => {
        const [a, b] = [await client(), await client({ backoff: { initial: 5_000, max: 5_000 } })];
        const key = name();
        const lock = await a.acquire(key);
        const waiting = b.acquire(key, { wait: 10_000 });
        await until(() => b.stats().waiting === 1); // refused once: only a release can end its wait
        const released = performance.now();
        await lock.release();
        const next = await waiting;
        const gap = performance.now() - released;
        assert.ok(next.fence > lock.fence);
        if (capabilities.wake) {
          // Without a wake-up the waiter could only notice after its 5 s poll.
          assert.ok(gap < 1_000, `woken ${gap.toFixed(1)} ms after release`);
        }
        await next.release();
      });

      test('wait elapses with LockTimeoutError', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lock = await a.acquire(key);
        const t0 = performance.now();
        await assert.rejects(b.acquire(key, { wait: 150 }), (e: unknown) => {
          assert.ok(e instanceof LockTimeoutError);
          assert.ok(e.waited >= 140, `waited ${e.waited}`);
          return true;
        });
        assert.ok(performance.now() - t0 >= 140);
        assert.equal(b.stats().timeouts, 1);
        await lock.release();
      });

      test('an abort signal cancels a wait at once with its reason', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lock = await a.acquire(key);
        const controller = new AbortController();
        const reason = new Error('caller gave up');
        const waiting = b.acquire(key, { wait: Infinity, signal: controller.signal });
        await until(() => b.stats().waiting === 1);
        const t0 = performance.now();
        controller.abort(reason);
        await assert.rejects(waiting, (e: unknown) => e === reason);
        assert.ok(performance.now() - t0 < 200);
        await assert.rejects(b.acquire(key, { signal: AbortSignal.abort(reason) }), (e: unknown) => e === reason);
        assert.equal(b.stats().waiting, 0);
        await lock.release();
      });

      test('wait: Infinity waits until the holder is done', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lock = await a.acquire(key);
        setTimeout(() => void lock.release(), 100);
        const next = await b.acquire(key, { wait: Infinity });
        assert.ok(next.held);
        await next.release();
      });
    });

    describe('leases: expiry, renewal, loss', () => {
      test('an expired lease frees the lock, aborts the signal and emits lost', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lost: unknown[] = [];
        a.on('lost', (event) => lost.push(event));
        const lock = await a.acquire(key, { ttl: 150 });
        const next = await b.acquire(key, { wait: 3_000 });
        assert.ok(next.fence > lock.fence);
        const reason = await aborted(lock.signal, 1_000);
        assert.ok(reason instanceof LockExpiredError);
        assert.equal(reason.code, 'ERR_LOCK_EXPIRED');
        assert.equal(lock.held, false);
        assert.equal(lost.length, 1);
        assert.equal(a.stats().lost, 1);
        // The old holder cannot release (or extend) what is now someone else's.
        await assert.rejects(lock.release(), LockReleaseError);
        await assert.rejects(lock.extend(), LockExpiredError);
        assert.ok(next.held);
        const info = await b.inspect(key);
        assert.deepEqual(
          info?.holders.map((h) => h.owner),
          [next.owner],
        );
        await next.release();
      });

      test('autoRenew keeps the lease while work runs', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        // A cold backend's first call (connecting, preparing) can take a 300 ms lease's whole life on a
        // busy machine: warm it first, so what is measured is renewal.
        await a.inspect(key);
        // 1 s, not less: a 2-core machine running the suite's processes can stall a renewal past a
        // shorter lease's end (a 300 ms one was lost so in CI), and a lost lease renews no more.
        const lock = await a.acquire(key, { ttl: 1_000, autoRenew: true });
        // Two renewals and then some: past the first lease's end by far.
        await until(() => a.stats().extended >= 3 || lock.signal.aborted);
        assert.equal(lock.signal.aborted, false, `lost: ${String(lock.signal.reason)}`);
        assert.ok(lock.held);
        assert.equal(await b.tryAcquire(key), null);
        assert.ok(a.stats().extended >= 2);
        await lock.release();
      });

      test('extend pushes expiry out; extend after release fails', async () => {
        const a = await client();
        const extended: unknown[] = [];
        a.on('extended', (e) => extended.push(e));
        const key = name();
        const lock = await a.acquire(key, { ttl: 1_000 });
        const before = lock.expiresAt;
        await lock.extend(4_000);
        assert.ok(lock.expiresAt > before + 2_000);
        assert.equal(extended.length, 1);
        await lock.release();
        await assert.rejects(lock.extend(), LockExpiredError);
      });

      test('release twice is an error, never a silent delete', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const lock = await a.acquire(key);
        await lock.release();
        const other = await b.acquire(key);
        await assert.rejects(lock.release(), LockReleaseError);
        assert.ok(await a.isLocked(key), 'the second holder keeps its lock');
        await other.release();
      });
    });

    describe('scopes', () => {
      test('withLock returns the result and releases', async () => {
        const a = await client();
        const key = name();
        const result = await a.withLock(key, async (lock) => {
          assert.ok(await a.isLocked(key));
          return lock.fence;
        });
        assert.equal(typeof result, 'bigint');
        assert.equal(await a.isLocked(key), false);
      });

      test("withLock never masks the caller's error, even when release fails", async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        const reported: unknown[] = [];
        a.on('error', (e) => reported.push(e));
        const mine = new TypeError('from the critical section');
        await assert.rejects(
          a.withLock(
            key,
            async () => {
              const stolen = await b.acquire(key, { wait: 3_000 }); // after our 100 ms lease runs out
              await stolen.release();
              throw mine;
            },
            { ttl: 100, autoRenew: false },
          ),
          (e: unknown) => e === mine,
        );
        assert.equal(reported.length, 1);
        assert.ok(reported[0] instanceof LockReleaseError);
      });

      test('withLock on a clean exit throws LockReleaseError when the lock was lost', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        await assert.rejects(
          a.withLock(
            key,
            async (lock) => {
              const stolen = await b.acquire(key, { wait: 3_000 });
              // The holder's own clock declares the loss (its timer may run a moment after b's grant).
              assert.ok((await aborted(lock.signal, 1_000)) instanceof LockExpiredError);
              await stolen.release();
              return 'done';
            },
            { ttl: 100, autoRenew: false },
          ),
          LockReleaseError,
        );
      });

      test('withLock renews by default', async () => {
        const [a, b] = [await client({ ttl: 1_000 }), await client()];
        const key = name();
        await a.inspect(key); // warm (see 'autoRenew keeps the lease while work runs', and its ttl)
        await a.withLock(key, async (lock) => {
          await until(() => a.stats().extended >= 3 || lock.signal.aborted); // well past the first lease
          assert.equal(lock.signal.aborted, false, `lost: ${String(lock.signal.reason)}`);
          assert.ok(lock.held);
          assert.equal(await b.tryAcquire(key), null);
        });
      });

      test('await using releases at the end of the block and never throws from disposal', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        {
          await using lock = await a.acquire(key);
          assert.ok(lock.held);
        }
        assert.equal(await a.isLocked(key), false);
        const reported: unknown[] = [];
        a.on('error', (e) => reported.push(e));
        const mine = new Error('body');
        await assert.rejects(
          (async () => {
            await using _lock = await a.acquire(key, { ttl: 100 });
            const stolen = await b.acquire(key, { wait: 3_000 });
            await stolen.release();
            throw mine;
          })(),
          (e: unknown) => e === mine,
        );
        assert.equal(reported.length, 1);
      });
    });

    describe('reentrancy', () => {
      test('nested acquires in a withLock scope re-enter with the same fence and need as many releases', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        await a.withLock(
          key,
          async (outer) => {
            const inner = await a.acquire(key, { reentrant: true, wait: 0 });
            assert.equal(inner.fence, outer.fence);
            assert.equal(inner.owner, outer.owner);
            const deeper = await (async () => {
              await delay(1);
              return a.acquire(key, { reentrant: true, wait: 0 });
            })();
            await deeper.release();
            await inner.release();
            assert.equal(await b.tryAcquire(key), null, 'still held by the outer hold');
          },
          { reentrant: true },
        );
        assert.equal(await a.isLocked(key), false);
      });

      test('an explicit owner re-enters; without reentrant it is a DeadlockError', async () => {
        const a = await client();
        const key = name();
        const owner = `worker-${randomUUID()}`;
        const first = await a.acquire(key, { owner, reentrant: true });
        const second = await a.acquire(key, { owner, reentrant: true });
        assert.equal(second.fence, first.fence);
        await assert.rejects(a.acquire(key, { owner }), DeadlockError);
        await first.release();
        assert.ok(await a.isLocked(key));
        await second.release();
        assert.equal(await a.isLocked(key), false);
      });

      test('a concurrent task outside the scope does not re-enter', async () => {
        const a = await client();
        const key = name();
        let entered!: () => void;
        const inside = new Promise<void>((resolve) => (entered = resolve));
        let leave!: () => void;
        const scope = a.withLock(
          key,
          async () => {
            entered();
            await new Promise<void>((resolve) => (leave = resolve));
          },
          { reentrant: true },
        );
        await inside;
        assert.equal(await a.tryAcquire(key, { reentrant: true }), null);
        leave();
        await scope;
      });

      test('read to write upgrade by the same owner is a DeadlockError, not a hang', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const a = await client();
        const key = name();
        await a.withRead(
          key,
          async () => {
            await assert.rejects(a.write(key, { reentrant: true, wait: 1_000 }), DeadlockError);
          },
          { reentrant: true },
        );
      });
    });

    describe('read-write locks', () => {
      test('many readers or one writer', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const [a, b, c] = [await client(), await client(), await client()];
        const key = name();
        const r1 = await a.read(key);
        const r2 = await b.read(key);
        assert.equal(r1.mode, 'shared');
        const info = await c.inspect(key);
        assert.equal(info?.mode, 'shared');
        assert.equal(info?.holders.length, 2);
        assert.ok(r2.fence > r1.fence);
        await assert.rejects(c.write(key, { wait: 0 }), LockTimeoutError);
        await r1.release();
        await r2.release();
        const w = await c.write(key, { wait: 0 });
        await assert.rejects(a.read(key, { wait: 0 }), LockTimeoutError);
        await w.release();
      });

      test('reader-preference: new readers join while a writer waits', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const [a, b] = [await client(), await client()];
        const { locks: c, attempts } = await counted({ backoff: { initial: 10, max: 50 } });
        const key = name();
        const r1 = await a.read(key);
        const writer = c.write(key, { wait: 5_000 });
        await until(() => c.stats().waiting === 1); // refused once: the writer is waiting
        const r2 = await b.read(key, { wait: 0, policy: 'reader-preference' });
        await r1.release();
        const tried = attempts();
        await until(() => attempts() > tried); // the writer tried again with only r2 left
        const info = await a.inspect(key);
        assert.equal(info?.mode, 'shared', 'the writer still waits for the second reader');
        await r2.release();
        const w = await writer;
        await w.release();
      });

      test('writer-preference: a waiting writer goes before new readers', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const opts = { policy: 'writer-preference' } as const;
        const [a, c] = [await client(opts), await client(opts)];
        const { locks: b, attempts } = await counted({ ...opts, backoff: { initial: 10, max: 50 } });
        const key = name();
        const order: string[] = [];
        const r1 = await a.read(key);
        const writer = c.write(key, { wait: 5_000 }).then((w) => {
          order.push('writer');
          return w;
        });
        await until(() => c.stats().waiting === 1); // refused once: its intent is announced
        await assert.rejects(b.read(key, { wait: 0 }), LockTimeoutError);
        const reader = b.read(key, { wait: 5_000 }).then((r) => {
          order.push('reader');
          return r;
        });
        await until(() => b.stats().waiting === 1);
        await r1.release();
        const w = await writer;
        const tried = attempts();
        await until(() => attempts() > tried); // the reader tried while the writer held it
        assert.deepEqual(order, ['writer']);
        await w.release();
        const r2 = await reader;
        assert.deepEqual(order, ['writer', 'reader']);
        await r2.release();
      });

      test('a writer that gives up no longer holds readers back', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const opts = { policy: 'writer-preference' } as const;
        const [a, b] = [await client(opts), await client(opts)];
        const key = name();
        const r1 = await a.read(key);
        await assert.rejects(b.write(key, { wait: 100 }), LockTimeoutError);
        const r2 = await b.read(key, { wait: 0 });
        await r1.release();
        await r2.release();
      });
    });

    describe('semaphores', () => {
      test('at most limit permits; a released permit goes to a waiter', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const [a, b] = [await client(), await client()];
        const key = name();
        const semA = a.semaphore(key, { limit: 3 });
        const semB = b.semaphore(key, { limit: 3 });
        const permits = [await semA.acquire(), await semB.acquire(), await semA.acquire()];
        assert.equal(await semB.tryAcquire(), null);
        assert.equal(await semA.held(), 3);
        const waiting = semB.acquire({ wait: 5_000 });
        await permits[1]!.release();
        const p = await waiting;
        assert.ok(p.fence > permits[2]!.fence);
        await Promise.all([p, permits[0]!, permits[2]!].map((x) => x.release()));
        assert.equal(await semA.held(), 0);
      });

      test('withPermit bounds concurrency', async (t) => {
        if (!capabilities.shared) return t.skip('backend has no shared leases');
        const clients = [await client(), await client()];
        const key = name();
        let running = 0;
        let peak = 0;
        await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            clients[i % 2]!.semaphore(key, { limit: 2 }).withPermit(async () => {
              running += 1;
              peak = Math.max(peak, running);
              await delay(10);
              running -= 1;
            }),
          ),
        );
        assert.equal(peak, 2);
      });
    });

    describe('acquireAll', () => {
      test('takes every key, sorted, and releases them together', async () => {
        const a = await client();
        const [k1, k2, k3] = [name(), name(), name()];
        const group = await a.acquireAll([k3, k1, k2, k1]);
        assert.deepEqual(group.keys, [k1, k2, k3].sort());
        for (const k of [k1, k2, k3]) assert.ok(await a.isLocked(k));
        assert.ok(group.get(k1)?.fence !== undefined);
        await group.extend(10_000);
        await group.release();
        for (const k of [k1, k2, k3]) assert.equal(await a.isLocked(k), false);
      });

      test('all or nothing: on failure what was taken is rolled back', async () => {
        const [a, b] = [await client(), await client()];
        const keys = [name(), name(), name()].sort();
        const blocker = await b.acquire(keys[2]!);
        await assert.rejects(a.acquireAll(keys, { wait: 100 }), LockTimeoutError);
        assert.equal(await a.isLocked(keys[0]!), false);
        assert.equal(await a.isLocked(keys[1]!), false);
        await blocker.release();
      });

      test('opposite orders never deadlock', async () => {
        const [a, b] = [await client(), await client()];
        const [k1, k2] = [name(), name()];
        let done = 0;
        await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const group = await (i % 2 ? a : b).acquireAll(i % 2 ? [k1, k2] : [k2, k1], { wait: 10_000 });
            await delay(2);
            await group.release();
            done += 1;
          }),
        );
        assert.equal(done, 10);
      });

      test('group.signal aborts when any member is lost', async () => {
        const [a, b] = [await client(), await client()];
        const [k1, k2] = [name(), name()];
        const group = await a.acquireAll([k1, k2], { ttl: 150 });
        const stolen = await b.acquire(k2, { wait: 3_000 });
        assert.ok((await aborted(group.signal, 1_000)) instanceof LockExpiredError);
        await stolen.release();
        await assert.rejects(group.release());
      });
    });

    describe('faults, through the target hooks', () => {
      test('fences keep increasing after the server loses its data', async (t) => {
        if (!target.forget) return t.skip('this target cannot lose its data on cue');
        if (!capabilities.fencing) return t.skip('fences are only informative on this backend');
        const key = name();
        const first = await (await client()).acquire(key);
        await first.release();
        await target.forget();
        const second = await (await client()).acquire(key); // a new connection, as after a restart
        assert.ok(second.fence > first.fence, `fence ${second.fence} after ${first.fence}`);
        await second.release();
      });

      test('a holder that dies without releasing frees the lock within its ttl', async (t) => {
        if (!target.crashHolder) return t.skip('this target cannot crash a holder');
        const key = name();
        const ttl = 500;
        await target.crashHolder(key, ttl);
        const died = performance.now();
        const next = await (await client()).acquire(key, { wait: 10_000 });
        const took = performance.now() - died;
        assert.ok(took < ttl + 1_500, `the lock was free ${took.toFixed(0)} ms after the holder died`);
        await next.release();
      });
    });

    describe('observation', () => {
      test('events and stats describe what happened', async () => {
        const a = await client();
        const seen: string[] = [];
        for (const e of ['acquired', 'released', 'extended'] as const) a.on(e, (ev: { key: string }) => seen.push(`${e}:${ev.key}`));
        const key = name();
        const lock = await a.acquire(key);
        await lock.extend();
        await lock.release();
        assert.deepEqual(seen, [`acquired:${key}`, `extended:${key}`, `released:${key}`]);
        const s = a.stats();
        assert.equal(s.acquired, 1);
        assert.equal(s.released, 1);
        assert.equal(s.extended, 1);
        assert.equal(s.held, 0);
        assert.equal(s.waiting, 0);
      });

      test('close releases held locks and rejects new acquisitions', async () => {
        const [a, b] = [await client(), await client()];
        const key = name();
        await a.acquire(key);
        await a.close();
        assert.equal(await b.isLocked(key), false);
        await assert.rejects(a.acquire(name()), LockError);
      });
    });

    test('owners are data: __proto__, constructor and toString behave like any other owner', async (t) => {
      const [a, b] = [await client(), await client()];
      for (const owner of ['__proto__', 'constructor', 'toString']) {
        const key = name();
        const lock = await a.acquire(key, { owner });
        assert.deepEqual(
          (await b.inspect(key))?.holders.map((h) => h.owner),
          [owner],
        );
        await lock.extend(5_000);
        await lock.release();
        assert.equal(await b.inspect(key), null);
        if (!capabilities.shared) {
          t.diagnostic('backend has no shared leases: exclusive ones only');
          continue;
        }
        const shared = name();
        const other = await b.read(shared);
        const reader = await a.read(shared, { owner });
        assert.deepEqual((await b.inspect(shared))?.holders.map((h) => h.owner).sort(), [owner, other.owner].sort());
        await reader.extend(5_000);
        assert.equal('expiresAt' in Object.prototype, false, 'extend() wrote nothing onto Object.prototype');
        await reader.release();
        assert.deepEqual(
          (await b.inspect(shared))?.holders.map((h) => h.owner),
          [other.owner],
        );
        await other.release();
      }
    });

    describe('bad input is rejected before any I/O', () => {
      // Lone surrogates: UTF-8 cannot encode them, so '\uD800' and '\uDBFF' would become one name.
      const keys: unknown[] = ['', 'x'.repeat(1025), 'é'.repeat(513), 'a\uD800', '\uDC00b', 42, null, undefined, {}, Symbol('k')];
      const options: unknown[] = [
        { ttl: NaN },
        { ttl: -1 },
        { ttl: 0 },
        { ttl: 1.5 },
        { ttl: Infinity },
        { ttl: 2 ** 31 },
        { ttl: '100' },
        { wait: -1 },
        { wait: NaN },
        { wait: 0.5 },
        { wait: '1s' },
        { signal: 'no' },
        { autoRenew: 'yes' },
        { reentrant: 1 },
        { owner: '' },
        { owner: 7 },
        { owner: 'o'.repeat(257) },
        { owner: 'o\uD800' },
        { owner: 'a\nb' },
        { ttlMs: 100 },
        { policy: 'fifo' },
        'ttl',
        [],
        null,
      ];

      test('keys', async () => {
        const { backend, calls } = counting(await target.backend());
        const a = new Locksmith(backend);
        open.push(a);
        for (const key of keys) {
          for (const call of [
            () => a.acquire(key as string),
            () => a.tryAcquire(key as string),
            () => a.read(key as string),
            () => a.write(key as string),
            () => a.withLock(key as string, () => 1),
            () => a.inspect(key as string),
            () => a.isLocked(key as string),
            () => a.acquireAll([key as string]),
          ]) {
            await assert.rejects(call(), LockArgumentError, `key of type ${typeof key}`);
          }
          assert.throws(() => a.semaphore(key as string, { limit: 1 }), LockArgumentError);
        }
        await assert.rejects(a.acquireAll([]), LockArgumentError);
        await assert.rejects(a.acquireAll('ab' as unknown as string[]), LockArgumentError);
        assert.equal(calls(), 0);
      });

      test('options of every call', async () => {
        const { backend, calls } = counting(await target.backend());
        const a = new Locksmith(backend);
        open.push(a);
        const key = name();
        for (const o of options) {
          const bad = o as never;
          const rwOnly = typeof o === 'object' && o !== null && 'policy' in o;
          for (const call of [
            () => a.read(key, bad),
            () => a.write(key, bad),
            () => a.withRead(key, () => 1, bad),
            ...(rwOnly
              ? []
              : [
                  () => a.acquire(key, bad),
                  () => a.withLock(key, () => 1, bad),
                  () => a.acquireAll([key], bad),
                  () => a.semaphore(key, { limit: 2 }).acquire(bad),
                ]),
          ]) {
            await assert.rejects(call(), LockArgumentError, JSON.stringify(o));
          }
        }
        await assert.rejects(a.acquire(key, { policy: 'writer-preference' } as never), LockArgumentError);
        await assert.rejects(a.tryAcquire(key, { wait: 100 } as never), LockArgumentError);
        await assert.rejects(a.withLock(key, 'not a function' as never), LockArgumentError);
        for (const limit of [0, -1, 1.5, NaN, Infinity, '2', undefined]) {
          assert.throws(() => a.semaphore(key, { limit } as never), LockArgumentError);
        }
        assert.throws(() => a.semaphore(key, { limit: 2, max: 3 } as never), LockArgumentError);
        for (const d of [
          { ttl: -5 },
          { wait: NaN },
          { policy: 'x' },
          { backoff: { initial: 0 } },
          { backoff: { max: 1, initial: 5 } },
          { colour: 1 },
          5,
        ]) {
          assert.throws(() => new Locksmith(backend, d as never), LockArgumentError, JSON.stringify(d));
        }
        assert.throws(() => new Locksmith(null as never), LockArgumentError);
        const lock = await a.acquire(key);
        const before = calls();
        for (const ttl of [NaN, -1, 0, 1.5, Infinity, '5'] as never[]) await assert.rejects(lock.extend(ttl), LockArgumentError);
        assert.equal(calls(), before);
        await lock.release();
        assert.equal(calls() - before, 1);
      });

      test('errors carry class, code, name and key', async () => {
        const a = await client();
        const err = await a.acquire('', {}).catch((e: unknown) => e);
        assert.ok(err instanceof LockArgumentError && err instanceof LockError && err instanceof Error);
        assert.equal(err.code, 'ERR_LOCK_ARGUMENT');
        assert.equal(err.name, 'LockArgumentError');
        const key = name();
        const held = await a.acquire(key);
        const timeout = await a.acquire(key, { wait: 0 }).catch((e: unknown) => e);
        assert.ok(timeout instanceof LockTimeoutError);
        assert.equal(timeout.name, 'LockTimeoutError');
        assert.equal(timeout.key, key);
        assert.match(timeout.message, /held by another owner/);
        await held.release();
      });
    });

    describe('stress', () => {
      test('50 concurrent workers never lose an update and fences only increase', async () => {
        const clients = await Promise.all(Array.from({ length: 5 }, () => client({ wait: 60_000 })));
        const key = name();
        const resource = { value: 0, fence: -1n, stale: 0 };
        const rounds = 4;
        await Promise.all(
          Array.from({ length: 50 }, async (_, w) => {
            for (let r = 0; r < rounds; r++) {
              await clients[w % clients.length]!.withLock(key, async (lock) => {
                // The resource checks the token, as a fenced store would.
                if (lock.fence <= resource.fence) resource.stale += 1;
                resource.fence = lock.fence;
                const read = resource.value;
                await delay(Math.random() < 0.5 ? 0 : 1);
                await Promise.resolve();
                resource.value = read + 1;
              });
            }
          }),
        );
        assert.equal(resource.value, 50 * rounds);
        assert.equal(resource.stale, 0);
      });
    });
  });
}
