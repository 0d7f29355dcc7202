// The helpers every backend shares: a waker set that never leaks a key, time bounds that hand late
// results back, and option checks that read alike everywhere.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { settleWithin, withTimeout } from '../../src/core/time.js';
import { Deadlines, type Expiring } from '../../src/core/deadlines.js';
import { until } from '../support/until.js';
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

describe('Deadlines', () => {
  const entry = (name: string, inMs: number, fired: string[], then?: () => void): Expiring & { deadline: number } => ({
    deadline: performance.now() + inMs,
    deadlineIndex: -1,
    expire: () => {
      fired.push(name);
      then?.();
    },
  });

  test('only what is due expires, each once; unwatched entries never do', async () => {
    const d = new Deadlines<Expiring>();
    const fired: string[] = [];
    const [a, b, c, e] = [entry('a', 20, fired), entry('b', 40, fired), entry('c', 30, fired), entry('e', 60_000, fired)];
    for (const x of [a, b, c, e]) d.watch(x);
    d.watch(a); // a second watch of the same entry changes nothing
    d.unwatch(c);
    d.unwatch(c);
    assert.equal(d.size, 3);
    await until(() => fired.length === 2);
    assert.deepEqual(fired, ['a', 'b']);
    assert.deepEqual([...d], [e]);
    assert.equal(a.deadlineIndex, -1);
    d.unwatch(e);
    assert.equal(d.size, 0);
  });

  test('an expiry may unwatch others and watch new entries, which still expire on time', async () => {
    const d = new Deadlines<Expiring>();
    const fired: string[] = [];
    const late = entry('late', 10, fired);
    const spared = entry('spared', 15, fired);
    const first = entry('first', 5, fired, () => {
      d.unwatch(spared);
      late.deadline = performance.now() + 10;
      d.watch(late);
    });
    const other = entry('other', 60_000, fired);
    d.watch(other);
    d.watch(first);
    d.watch(spared);
    await until(() => fired.includes('late'));
    assert.deepEqual(fired, ['first', 'late']);
    assert.deepEqual([...d], [other]);
    d.unwatch(other);
  });

  test('iteration is a snapshot: expiring what it yields skips nothing', () => {
    const d = new Deadlines<Expiring>();
    const all = Array.from({ length: 5 }, (_, i) => entry(String(i), 60_000, []));
    for (const x of all) d.watch(x);
    const seen: Expiring[] = [];
    for (const x of d) {
      seen.push(x);
      d.unwatch(x);
    }
    assert.equal(seen.length, 5);
    assert.equal(d.size, 0);
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
