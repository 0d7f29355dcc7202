// Core behaviour that needs a backend to misbehave on cue: a real memory backend wrapped so that
// chosen calls fail, stall or refuse.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileBackend } from '../../src/backends/file/index.js';
import { memoryBackend } from '../../src/backends/memory/index.js';
import {
  DeadlockError,
  LockAcquisitionError,
  LockArgumentError,
  LockError,
  LockExpiredError,
  LockOwnershipError,
  LockReleaseError,
  LockTimeoutError,
  Locksmith,
  type LockBackend,
} from '../../src/index.js';
import { backoffDelay } from '../../src/core/waiting.js';

type Overrides = Partial<Pick<LockBackend, 'acquire' | 'extend' | 'release'>>;

function wrapped(make: (real: LockBackend) => Overrides): LockBackend {
  const real = memoryBackend();
  return { ...real, ...make(real) };
}

/** Resolves once `condition` holds, checked every 2 ms, or fails after `ms`. */
async function waitFor(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`condition not met within ${ms} ms`);
    await delay(2);
  }
}

function until(signal: AbortSignal, ms: number): Promise<unknown> {
  return Promise.race([
    new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason))),
    delay(ms).then(() => assert.fail(`not aborted within ${ms} ms`)),
  ]);
}

describe('watchdog', () => {
  test('a failed renewal is reported and retried; the lease survives', async () => {
    let failures = 2;
    const locks = new Locksmith(
      wrapped((real) => ({
        extend: async (...args) => {
          if (failures-- > 0) throw new Error('connection reset');
          return real.extend(...args);
        },
      })),
    );
    const errors: unknown[] = [];
    locks.on('error', (e) => errors.push(e));
    const lock = await locks.acquire('k', { ttl: 450, autoRenew: true });
    await delay(1_000);
    assert.ok(lock.held);
    assert.equal(errors.length, 2);
    assert.ok(locks.stats().extended >= 1);
    await lock.release();
  });

  test('renewals that keep failing end in loss at the deadline, reported through signal and event', async () => {
    const locks = new Locksmith(wrapped(() => ({ extend: () => Promise.reject(new Error('unreachable')) })));
    const lost: unknown[] = [];
    locks.on('lost', (e) => lost.push(e));
    locks.on('error', () => {});
    const lock = await locks.acquire('k', { ttl: 200, autoRenew: true });
    const t0 = performance.now();
    const reason = await until(lock.signal, 1_000);
    assert.ok(reason instanceof LockExpiredError);
    assert.ok(performance.now() - t0 >= 150, 'not before the lease could have ended');
    assert.equal(lost.length, 1);
  });

  test('a refused renewal is a loss at once, not at the deadline', async () => {
    const locks = new Locksmith(wrapped(() => ({ extend: () => Promise.resolve(false) })));
    const lock = await locks.acquire('k', { ttl: 3_000, autoRenew: true });
    const t0 = performance.now();
    const reason = await until(lock.signal, 2_000);
    assert.ok(reason instanceof LockExpiredError);
    assert.match(reason.message, /renewal was refused/);
    assert.ok(performance.now() - t0 < 1_500);
  });

  test('no error listener: failures are swallowed, never thrown from a timer', async () => {
    const locks = new Locksmith(wrapped(() => ({ extend: () => Promise.reject(new Error('down')) })));
    const lock = await locks.acquire('k', { ttl: 150, autoRenew: true });
    await until(lock.signal, 1_000);
    await assert.rejects(lock.release());
  });
});

describe('release', () => {
  test('waits for an extension in flight, once, before it is sent', async () => {
    const order: string[] = [];
    let extending = 0;
    const locks = new Locksmith(
      wrapped((real) => ({
        extend: async (...args) => {
          extending += 1;
          order.push('extend sent');
          await delay(150);
          order.push('extend done');
          return real.extend(...args);
        },
        release: (...args) => {
          order.push('release sent');
          return real.release(...args);
        },
      })),
    );
    const lock = await locks.acquire('k', { ttl: 600, autoRenew: true });
    await waitFor(() => extending === 1); // the watchdog's renewal (at ttl/3) is on its way
    await lock.release();
    assert.deepEqual(order, ['extend sent', 'extend done', 'release sent']);
    assert.equal(await locks.inspect('k'), null);
    assert.equal(locks.stats().released, 1);
    await locks.close();
  });

  test('without an extension in flight, release is sent at once', async () => {
    const order: string[] = [];
    const locks = new Locksmith(
      wrapped((real) => ({
        release: (...args) => {
          order.push('release sent');
          return real.release(...args);
        },
      })),
    );
    const lock = await locks.acquire('k', { ttl: 600, autoRenew: true });
    const released = lock.release();
    assert.deepEqual(order, ['release sent'], 'sent in the same tick as release()');
    await released;
    await locks.close();
  });
});

describe('a pause past the deadline', () => {
  test('is a loss even when the backend would still renew (file: the kernel kept the lock)', async () => {
    for (const backend of [fileBackend({ dir: mkdtempSync(join(tmpdir(), 'pause-')) }), memoryBackend()]) {
      const locks = new Locksmith(backend);
      const events: string[] = [];
      locks.on('lost', () => events.push('lost')).on('extended', () => events.push('extended'));
      const lock = await locks.acquire('k', { ttl: 300, autoRenew: true });
      const until = performance.now() + 900;
      while (performance.now() < until) {
        // the process is stalled (a GC pause, a blocked loop) past its ttl
      }
      await delay(20);
      assert.deepEqual(events, ['lost'], backend.name);
      assert.ok(lock.signal.aborted, backend.name);
      assert.equal(lock.held, false, backend.name);
      await assert.rejects(lock.release());
      await locks.close();
    }
  });
});

describe('backend-reported loss', () => {
  test('onLost aborts the matching lease only, and emits lost', async () => {
    let report!: (key: string, owner: string, reason: unknown) => void;
    const real = memoryBackend();
    const locks = new Locksmith({ ...real, onLost: (listener) => void (report = listener) });
    const lost: string[] = [];
    locks.on('lost', (e) => lost.push(e.key));
    const a = await locks.acquire('a');
    const b = await locks.acquire('b');
    const cause = new Error('connection terminated');
    report('a', b.owner, cause); // wrong owner: nothing happens
    assert.equal(a.signal.aborted, false);
    report('a', a.owner, cause);
    assert.ok(a.signal.reason instanceof LockExpiredError);
    assert.equal((a.signal.reason as Error).cause, cause);
    assert.deepEqual(lost, ['a']);
    assert.ok(b.held);
    await b.release();
  });
});

describe('capabilities', () => {
  test("expiry 'connection': no local deadline; the lease ends when the backend reports it lost", async () => {
    let report!: (key: string, owner: string, reason: unknown) => void;
    const real = memoryBackend();
    const locks = new Locksmith({
      ...real,
      capabilities: { ...real.capabilities, expiry: 'connection' },
      onLost: (listener) => void (report = listener),
    });
    const lock = await locks.acquire('k', { ttl: 50, autoRenew: true });
    assert.equal(lock.expiresAt, Infinity);
    assert.ok(lock.held);
    report('k', lock.owner, new Error('connection closed'));
    assert.ok(lock.signal.reason instanceof LockExpiredError);
    await locks.close();
  });

  test('a backend with missing or wrong capabilities is refused', () => {
    const real = memoryBackend();
    for (const capabilities of [undefined, {}, { ...real.capabilities, fencing: 'yes' }, { ...real.capabilities, expiry: 'session' }]) {
      assert.throws(() => new Locksmith({ ...real, capabilities } as never), LockArgumentError, JSON.stringify(capabilities));
    }
    // A lease kept by a connection can only be known lost through onLost.
    assert.throws(() => new Locksmith({ ...real, capabilities: { ...real.capabilities, expiry: 'connection' } }), LockArgumentError);
  });
});

describe('errors', () => {
  test('every class names itself explicitly (not through constructor.name), not enumerable', () => {
    const made = [
      new LockError('ERR_LOCK_ARGUMENT', 'x'),
      new LockArgumentError('x'),
      new LockTimeoutError('x', { waited: 1 }),
      new LockAcquisitionError('x'),
      new LockReleaseError('x'),
      new LockExpiredError('x'),
      new LockOwnershipError('x'),
      new DeadlockError('x'),
    ];
    const names = [
      'LockError',
      'LockArgumentError',
      'LockTimeoutError',
      'LockAcquisitionError',
      'LockReleaseError',
      'LockExpiredError',
      'LockOwnershipError',
      'DeadlockError',
    ];
    assert.deepEqual(
      made.map((e) => e.name),
      names,
    );
    // A minifier renames classes: the name must not follow.
    class Renamed extends LockTimeoutError {}
    assert.equal(new Renamed('x', { waited: 1 }).name, 'LockTimeoutError');
    assert.ok(made.every((e) => !Object.keys(e).includes('name')));
    assert.match(String(made[2]), /^LockTimeoutError: x/);
  });
});

describe('acquisition', () => {
  test('a backend failure is a LockAcquisitionError with the cause', async () => {
    const cause = new Error('ECONNREFUSED');
    const locks = new Locksmith(wrapped(() => ({ acquire: () => Promise.reject(cause) })));
    const err = await locks.acquire('k').catch((e: unknown) => e);
    assert.ok(err instanceof LockAcquisitionError);
    assert.equal(err.cause, cause);
    assert.equal(err.key, 'k');
    assert.equal(locks.stats().failures, 1);
  });

  test('a grant that lands after the caller aborted is handed back', async () => {
    let backend!: LockBackend;
    const locks = new Locksmith(
      (backend = wrapped((real) => ({
        acquire: async (req) => {
          await delay(80);
          return real.acquire(req);
        },
      }))),
    );
    const controller = new AbortController();
    const pending = locks.acquire('k', { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop')), 10);
    await assert.rejects(pending, /stop/);
    assert.equal(await backend.inspect('k'), null);
    assert.equal(locks.stats().held, 0);
  });

  test('close() rejects waiters and releases what is held', async () => {
    const backend = memoryBackend();
    const other = new Locksmith(backend);
    const locks = new Locksmith(backend);
    const blocker = await other.acquire('k');
    const waiting = locks.acquire('k', { wait: 10_000 });
    const mine = await locks.acquire('m');
    await delay(20);
    await locks.close();
    await assert.rejects(waiting, LockAcquisitionError);
    assert.equal(mine.held, false);
    assert.equal(await backend.inspect('m'), null);
    await blocker.release();
  });

  test('a throwing event listener does not break locking', async () => {
    const locks = new Locksmith(memoryBackend());
    const errors: unknown[] = [];
    locks.on('acquired', () => {
      throw new Error('listener bug');
    });
    locks.on('error', (e) => errors.push(e));
    const lock = await locks.acquire('k');
    await lock.release();
    assert.equal(errors.length, 1);
  });
});

describe('waiting', () => {
  test('a long wait with many wake-ups piles up no listeners', async () => {
    const real = memoryBackend();
    let wakes = 0;
    // Spurious wake-ups are allowed by the contract: each one is a new round of the wait loop.
    const backend: LockBackend = { ...real, waitForChange: () => delay(2).then(() => void (wakes += 1)) };
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const [a, b] = [new Locksmith(backend), new Locksmith(backend)];
      const held = await a.acquire('busy');
      await assert.rejects(b.acquire('busy', { wait: 300 }), { code: 'ERR_LOCK_TIMEOUT' });
      assert.ok(wakes >= 20, `only ${wakes} rounds`);
      await held.release();
      await delay(10); // warnings are emitted on the next tick
      assert.deepEqual(
        warnings.map((w) => w.name).filter((n) => n === 'MaxListenersExceededWarning'),
        [],
      );
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('backoff', () => {
  test('full jitter stays under a cap that doubles up to max', () => {
    const backoff = { initial: 10, max: 300 };
    for (let n = 0; n < 12; n++) {
      const cap = Math.min(300, 10 * 2 ** n);
      let top = 0;
      for (let i = 0; i < 400; i++) {
        const d = backoffDelay(backoff, n);
        assert.ok(d >= 0 && d <= cap, `attempt ${n}: ${d} > ${cap}`);
        top = Math.max(top, d);
      }
      assert.ok(top > cap * 0.8, `attempt ${n}: spread reaches the cap (${top} of ${cap})`);
    }
  });
});
