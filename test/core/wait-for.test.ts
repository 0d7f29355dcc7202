// Locks.waitFor: the core's one wait loop around a recipe's own attempt (pools use it). It is woken by
// changes of its key (this process's `changed`, the backend's waitForChange), never polls faster than
// the safety poll, and ends like an acquire: a timeout, the signal's reason, or the Locksmith closing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStore, memoryBackend } from '../../src/backends/memory/index.js';
import { LockArgumentError, LockTimeoutError, Locksmith, type WaitAttempt } from '../../src/index.js';

const NO_POLL = { backoff: { initial: 30_000, max: 30_000 } };

test('woken by changed(key) here and by a change of the key in another Locksmith, not polling', async () => {
  const store = new MemoryStore();
  const a = new Locksmith(memoryBackend({ store }), NO_POLL);
  const b = new Locksmith(memoryBackend({ store }), NO_POLL);
  let attempts = 0;
  let open = false;
  const waiting = a.waitFor('k', async (): Promise<WaitAttempt<string>> => (++attempts, open ? { value: 'in' } : {}), { wait: 20_000 });
  while (a.stats().waiting === 0) await new Promise((r) => setImmediate(r));
  const before = attempts;
  a.changed('k'); // woken, still refused
  while (attempts === before) await new Promise((r) => setImmediate(r));
  open = true;
  // A release of the key through another Locksmith on the store is a change the backend reports.
  const held = await b.acquire('k');
  await held.release();
  assert.equal(await waiting, 'in');
  assert.ok(attempts <= 5, `${attempts} attempts`);
  await Promise.all([a.close(), b.close()]);
});

test('a timeout, wait 0, an abort and closing end it as they end an acquire', async () => {
  const locks = new Locksmith(memoryBackend());
  let attempts = 0;
  const never = async (): Promise<{ retryAfter?: number }> => (++attempts, {});
  await assert.rejects(locks.waitFor('k', never, { wait: 30 }), LockTimeoutError);
  attempts = 0;
  await assert.rejects(locks.waitFor('k', never, { wait: 0 }), LockTimeoutError);
  assert.equal(attempts, 1);
  const ac = new AbortController();
  const aborted = locks.waitFor('k', never, { wait: 10_000, signal: ac.signal });
  ac.abort(new Error('stop'));
  await assert.rejects(aborted, /stop/);
  const closing = locks.waitFor('k', never, { wait: 10_000 });
  await locks.close();
  await assert.rejects(closing, /closed/);
});

test('retryAfter bounds the sleep of a refused round', async () => {
  const locks = new Locksmith(memoryBackend(), NO_POLL);
  let attempts = 0;
  const started = performance.now();
  const value = await locks.waitFor('k', async () => (++attempts >= 3 ? { value: attempts } : { retryAfter: 20 }), { wait: 10_000 });
  assert.equal(value, 3);
  assert.ok(performance.now() - started < 5_000);
  await locks.close();
});

test('bad input is a LockArgumentError, and the attempt never runs', async () => {
  const locks = new Locksmith(memoryBackend());
  let attempts = 0;
  const attempt = async (): Promise<{ value: number }> => ({ value: ++attempts });
  await assert.rejects(locks.waitFor('', attempt, { wait: 1 }), LockArgumentError);
  await assert.rejects(locks.waitFor('k', 'no' as never, { wait: 1 }), LockArgumentError);
  await assert.rejects(locks.waitFor('k', attempt, { wait: -1 }), LockArgumentError);
  await assert.rejects(locks.waitFor('k', attempt, { wait: 1, signal: {} as never }), LockArgumentError);
  await assert.rejects(locks.waitFor('k', attempt, { wait: 1, colour: 'red' } as never), LockArgumentError);
  assert.throws(() => locks.changed(''), LockArgumentError);
  assert.equal(attempts, 0);
  await locks.close();
});
