// What a Locksmith tells the outside world: diagnostics channels, latency percentiles in stats(), and
// errors with no caller to throw to (the 'error' event, else the logger, else one process warning).

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { memoryBackend } from '../../src/backends/memory/index.js';
import { LockArgumentError, LockExpiredError, Locksmith, type LockBackend } from '../../src/index.js';

type Ctx = Record<string, unknown>;

/** Records every event of the tracing channels `names`, plus plain channels, until the returned stop(). */
function record(names: string[], plain: string[] = []): { events: [string, Ctx][]; stop: () => void } {
  const events: [string, Ctx][] = [];
  const stops: (() => void)[] = [];
  for (const name of names) {
    const handlers = {
      start: (c: unknown) => void events.push([`${name}:start`, { ...(c as Ctx) }]),
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: (c: unknown) => void events.push([`${name}:asyncEnd`, { ...(c as Ctx) }]),
      error: (c: unknown) => void events.push([`${name}:error`, { ...(c as Ctx) }]),
    };
    const channel = diagnostics.tracingChannel(`locksmith:${name}`);
    channel.subscribe(handlers);
    stops.push(() => channel.unsubscribe(handlers));
  }
  for (const name of plain) {
    const handler = (message: unknown): void => void events.push([name, { ...(message as Ctx) }]);
    diagnostics.subscribe(`locksmith:${name}`, handler);
    stops.push(() => diagnostics.unsubscribe(`locksmith:${name}`, handler));
  }
  return { events, stop: () => stops.forEach((s) => s()) };
}

async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`condition not met within ${ms} ms`);
    await delay(2);
  }
}

describe('diagnostics channels', () => {
  test('acquire, extend and release are traced with key, backend, mode, waited, held and outcome', async () => {
    const locks = new Locksmith(memoryBackend());
    const { events, stop } = record(['acquire', 'extend', 'release'], ['lost']);
    try {
      const first = await locks.acquire('k');
      const waiting = locks.acquire('k', { wait: 5_000 });
      await until(() => locks.stats().waiting === 1);
      await first.extend();
      await first.release();
      const second = await waiting;
      await assert.rejects(locks.acquire('k', { wait: 0 }));
      await second.release();
      const lost = await locks.acquire('short', { ttl: 30 });
      await until(() => lost.signal.aborted);
    } finally {
      stop();
    }
    const ends = events.filter(([name]) => name.endsWith('asyncEnd')).map(([name, c]) => [name, c.key, c.outcome]);
    assert.deepEqual(ends, [
      ['acquire:asyncEnd', 'k', 'acquired'],
      ['extend:asyncEnd', 'k', 'extended'],
      ['release:asyncEnd', 'k', 'released'],
      ['acquire:asyncEnd', 'k', 'acquired'],
      ['acquire:asyncEnd', 'k', 'timeout'],
      ['release:asyncEnd', 'k', 'released'],
      ['acquire:asyncEnd', 'short', 'acquired'],
    ]);
    const acquires = events.filter(([name]) => name === 'acquire:asyncEnd').map(([, c]) => c);
    assert.equal(acquires[0]!.backend, 'memory');
    assert.equal(acquires[0]!.mode, 'exclusive');
    assert.equal(acquires[0]!.waited, 0);
    assert.ok((acquires[1]!.waited as number) > 0, 'the second acquire waited');
    assert.equal(typeof acquires[1]!.fence, 'bigint');
    assert.ok(events.some(([name, c]) => name === 'acquire:error' && c.error instanceof Error));
    const release = events.find(([name]) => name === 'release:asyncEnd')![1];
    assert.ok(typeof release.held === 'number' && release.held >= 0);
    const lost = events.find(([name]) => name === 'lost')![1];
    assert.equal(lost.key, 'short');
    assert.ok(lost.error instanceof LockExpiredError);
    await locks.close();
  });
});

describe('stats percentiles', () => {
  test('wait and hold times have p50 and p99 over the recent leases', async () => {
    const locks = new Locksmith(memoryBackend());
    assert.deepEqual(locks.stats().waitTimes, { p50: 0, p99: 0, samples: 0 });
    for (let i = 0; i < 20; i++) {
      const lock = await locks.acquire('k');
      if (i === 19) await delay(20); // one long hold: it is the p99, not the p50
      await lock.release();
    }
    const { waitTimes, holdTimes } = locks.stats();
    assert.equal(waitTimes.samples, 20);
    assert.equal(holdTimes.samples, 20);
    assert.ok(holdTimes.p99 >= 15, `p99 ${holdTimes.p99}`);
    assert.ok(holdTimes.p50 < holdTimes.p99);
    // The window is bounded: many more leases keep it at its size.
    for (let i = 0; i < 2_000; i++) await (await locks.acquire('k')).release();
    assert.equal(locks.stats().holdTimes.samples, 1024);
    await locks.close();
  });
});

describe('errors with no caller', () => {
  const failingRenewals = (): LockBackend => {
    const real = memoryBackend();
    return { ...real, extend: () => Promise.reject(new Error('backend unreachable')) };
  };

  test('go to the logger when nothing listens for error', async () => {
    const logged: unknown[][] = [];
    const logger = { warn: (...args: unknown[]) => logged.push(args), error: (...args: unknown[]) => logged.push(args) };
    const locks = new Locksmith(failingRenewals(), { logger });
    // Renewal at ttl/3, loss at ttl: far enough apart that a stalled machine still renews first.
    const lock = await locks.acquire('k', { ttl: 300, autoRenew: true });
    await until(() => logged.length > 0);
    assert.match(String(logged[0]![1]), /renewal failed/);
    await until(() => lock.signal.aborted);
    await assert.rejects(lock.release());
    await locks.close();
  });

  test('else to one process warning per kind, never silently dropped', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const locks = new Locksmith(failingRenewals());
      const lock = await locks.acquire('k', { ttl: 300, autoRenew: true });
      await until(() => lock.signal.aborted); // renewals failed on the way
      {
        await using _gone = await locks.acquire('other', { ttl: 20 });
        await until(() => _gone.signal.aborted);
      } // disposal: the release fails, with nobody to throw to
      await until(() => warnings.filter((w) => w.name === 'LocksmithWarning').length >= 2);
      await delay(10);
      const ours = warnings.filter((w) => w.name === 'LocksmithWarning').map((w) => (w as Error & { code: string }).code);
      assert.deepEqual(ours.sort(), ['LOCKSMITH_RELEASE', 'LOCKSMITH_RENEWAL']);
      await assert.rejects(lock.release());
      await locks.close();
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('a logger without warn and error is refused', () => {
    for (const logger of [{}, { error: () => {} }, 'console', null]) {
      assert.throws(() => new Locksmith(memoryBackend(), { logger } as never), LockArgumentError);
    }
  });
});
