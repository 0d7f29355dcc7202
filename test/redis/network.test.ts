// The Redis backend behind a TCP proxy that black-holes or resets connections: a connection that
// silently stops answering must fail calls with a clear error in bounded time (never hang a wait or
// a release), and the backend must recover once the network does.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { redisBackend } from '../../src/backends/redis/index.js';
import { LockAcquisitionError, Locksmith, LockReleaseError, LockTimeoutError } from '../../src/index.js';
import { TcpProxy } from '../support/proxy.js';
import { RedisNode, stopAll } from '../support/redis.js';

const COMMAND_TIMEOUT = 300;

describe('redis backend behind a failing network', () => {
  let node: RedisNode;
  let proxy: TcpProxy;
  const closers: (() => unknown)[] = [];
  before(async () => {
    node = await RedisNode.start();
    proxy = await TcpProxy.start(node.port);
  });
  after(async () => {
    for (const close of closers) await close();
    await proxy.close();
    await stopAll();
  });

  function direct(): Locksmith {
    const client = new Redis(node.port, '127.0.0.1');
    const locks = new Locksmith(redisBackend({ client }));
    closers.push(
      () => locks.close(),
      () => client.disconnect(),
    );
    return locks;
  }

  function proxied(): Locksmith {
    const client = new Redis(proxy.port, '127.0.0.1', { retryStrategy: () => 20 });
    client.on('error', () => undefined);
    const locks = new Locksmith(redisBackend({ client, commandTimeout: COMMAND_TIMEOUT }), { backoff: { initial: 10, max: 200 } });
    locks.on('error', () => undefined);
    closers.push(
      () => locks.close(),
      () => client.disconnect(),
    );
    return locks;
  }

  /** `waiter` waits 1 s for `key` held elsewhere; the network goes dark 100 ms in. It must give up in time. */
  async function blackholedWait(waiter: Locksmith, key: string): Promise<void> {
    const t0 = performance.now();
    const outcome = waiter.acquire(key, { wait: 1_000 }).then(
      () => 'acquired',
      (error: unknown) => error,
    );
    await delay(100);
    proxy.blackhole();
    const error = await outcome;
    const took = performance.now() - t0;
    assert.ok(error instanceof LockAcquisitionError || error instanceof LockTimeoutError, String(error));
    assert.ok(took < 1_000 + COMMAND_TIMEOUT + 400, `settled after ${took.toFixed(0)} ms`);
  }

  test('a black-holed wait fails with a clear error within wait + commandTimeout; a healed network recovers', async () => {
    const holder = direct();
    const lock = await holder.acquire('net:wait', { ttl: 10_000 });
    const waiter = proxied();
    await blackholedWait(waiter, 'net:wait');
    // The partition heals (held bytes arrive late, and are ignored); the lock is free again soon after.
    proxy.pass();
    await lock.release();
    const next = await waiter.acquire('net:wait', { wait: 3_000 });
    assert.ok(next.fence > lock.fence);
    await next.release();
  });

  test('a release on a black-holed connection fails with LockReleaseError instead of hanging', async () => {
    const locks = proxied();
    const lock = await locks.acquire('net:release', { ttl: 2_000 });
    proxy.blackhole();
    try {
      const t0 = performance.now();
      await assert.rejects(lock.release(), LockReleaseError);
      assert.ok(performance.now() - t0 < COMMAND_TIMEOUT + 400);
    } finally {
      proxy.pass();
    }
  });

  test('connections reset during a wait: the client reconnects and the waiter gets the lock on release', async () => {
    const holder = direct();
    const lock = await holder.acquire('net:reset', { ttl: 10_000 });
    const waiter = proxied();
    const waiting = waiter.acquire('net:reset', { wait: 5_000 });
    await delay(100);
    proxy.dropAll(); // both the waiter's command connection and its subscriber go
    await delay(100);
    const released = performance.now();
    await lock.release();
    const next = await waiting;
    // Woken by the re-established subscription, or at worst by the waiter's safety poll (200 ms).
    assert.ok(performance.now() - released < 1_000);
    await next.release();
  });

  test('node-redis: a black-holed wait also fails in bounded time', async () => {
    const holder = direct();
    const lock = await holder.acquire('net:node-redis', { ttl: 10_000 });
    const client = createClient({ url: `redis://127.0.0.1:${proxy.port}` });
    client.on('error', () => undefined);
    await client.connect();
    const waiter = new Locksmith(redisBackend({ client, commandTimeout: COMMAND_TIMEOUT }), { backoff: { initial: 10, max: 200 } });
    closers.push(
      () => waiter.close(),
      () => client.disconnect().catch(() => undefined),
    );
    try {
      await blackholedWait(waiter, 'net:node-redis');
    } finally {
      proxy.pass();
    }
    await lock.release();
  });
});
