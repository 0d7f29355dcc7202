// The helpers every backend shares: a waker set that never leaks a key, time bounds that hand late
// results back, and option checks that read alike everywhere.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { settleWithin, withTimeout } from '../../src/core/time.js';
import { msOption, prefixOption } from '../../src/backends/shared/checks.js';
import { Wakers } from '../../src/backends/shared/wakers.js';
import { LockArgumentError } from '../../src/index.js';

describe('Wakers', () => {
  test('a wake reaches each waiter of its key once, and leaves no key behind', () => {
    const w = new Wakers();
    const seen: string[] = [];
    w.add('a', () => seen.push('a1'));
    w.add('a', () => seen.push('a2'));
    w.add('b', () => seen.push('b'));
    w.wake('a');
    w.wake('a');
    assert.deepEqual(seen, ['a1', 'a2']);
    assert.deepEqual(w.keys(), ['b']);
    w.wakeAll();
    assert.deepEqual(seen, ['a1', 'a2', 'b']);
    assert.equal(w.has('b'), false);
  });

  test('a withdrawn waiter is not called and its key goes with its last waiter', () => {
    const w = new Wakers();
    let called = false;
    const withdraw = w.add('k', () => (called = true));
    withdraw();
    withdraw();
    assert.equal(w.has('k'), false);
    w.wake('k');
    assert.equal(called, false);
  });

  test('wait() settles on a wake or an abort, and an aborted wait leaves no waiter', async () => {
    const w = new Wakers();
    const woken = w.wait('k', new AbortController().signal);
    w.wake('k');
    await woken;
    const ac = new AbortController();
    const aborted = w.wait('k', ac.signal);
    assert.equal(w.has('k'), true);
    ac.abort();
    await aborted;
    assert.equal(w.has('k'), false);
  });
});

describe('time bounds', () => {
  test('withTimeout rejects with the given error and hands a late value back', async () => {
    let late: number | undefined;
    let finish!: (n: number) => void;
    const slow = new Promise<number>((resolve) => (finish = resolve));
    // The bound is unref'd (it alone keeps nothing alive, and `slow` is no I/O), so the test keeps
    // the loop up itself; without, the process may end before the bound fires.
    const keepAlive = setInterval(() => undefined, 1_000);
    try {
      await assert.rejects(
        withTimeout(
          slow,
          5,
          () => new Error('too slow'),
          (v) => (late = v),
        ),
        /too slow/,
      );
      finish(7);
      await slow;
      await Promise.resolve();
      assert.equal(late, 7);
      assert.equal(await withTimeout(Promise.resolve(3), 1_000, () => new Error('no')), 3);
    } finally {
      clearInterval(keepAlive);
    }
  });

  test('settleWithin never rejects and gives up after its bound', async () => {
    await settleWithin(Promise.reject(new Error('ignored')), 1_000);
    // The bound is unref'd (it alone keeps nothing alive), so this test keeps the loop up itself.
    const keepAlive = setInterval(() => undefined, 1_000);
    const started = performance.now();
    await settleWithin(new Promise(() => undefined), 20);
    clearInterval(keepAlive);
    assert.ok(performance.now() - started >= 15);
  });
});

describe('option checks', () => {
  test('ms options take integers in range and name the option when not', () => {
    assert.equal(msOption('x()', 'poll', undefined, 25, 1), 25);
    assert.equal(msOption('x()', 'poll', 600_000, 25, 1), 600_000);
    for (const bad of [0, 1.5, NaN, Infinity, -1, 600_001, '5', null]) {
      assert.throws(
        () => msOption('x()', 'poll', bad, 25, 1),
        (e: unknown) => e instanceof LockArgumentError && /x\(\): poll/.test(e.message),
      );
    }
  });

  test('prefixes refuse braces, whitespace and more than 128 characters', () => {
    assert.equal(prefixOption('x()', undefined, 'p:'), 'p:');
    assert.equal(prefixOption('x()', 'a'.repeat(128), 'p:'), 'a'.repeat(128));
    for (const bad of ['a{b', 'a}', 'a b', 'a\n', 'a'.repeat(129), 5]) {
      assert.throws(() => prefixOption('x()', bad, 'p:'), LockArgumentError);
    }
  });
});
