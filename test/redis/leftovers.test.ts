// What a lock leaves on the server, and what the backend makes of values it did not write: nothing of
// a lock outlives its lease by more than its ttl, fences still rise across release, expiry and an
// empty restart, and a foreign or malformed value is an error, never "free".

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { keysFor, redisBackend } from '../../src/backends/redis/index.js';
import { LockAcquisitionError, LockError, Locksmith } from '../../src/index.js';
import { disconnectClients, ioClient as io, RedisNode, stopAll } from '../support/redis.js';

after(async () => {
  disconnectClients();
  await stopAll();
});

/** Every key on the server, by SCAN (which never returns a key past its expiry). */
async function allKeys(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

async function until(condition: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(20);
  }
}

describe('nothing left behind', () => {
  let node: RedisNode;
  before(async () => {
    node = await RedisNode.start();
  });

  test('10,000 names locked once leave no key once their ttl has passed', async () => {
    const observer = io(node);
    const prefix = 'left:';
    const locks = new Locksmith(redisBackend({ client: io(node), prefix }), { wait: 0 });
    const other = new Locksmith(redisBackend({ client: io(node), prefix }), { wait: 0 });
    const TTL = 3_000;
    const names = Array.from({ length: 10_000 }, (_, i) => `idempotency:${i}`);
    // Half released, half left to expire; some refused a second owner (a mark on the lease), some
    // taken as read locks and semaphores (their hashes).
    let next = 0;
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        for (let i = next++; i < names.length; i = next++) {
          const name = names[i]!;
          const lock =
            i % 10 === 0
              ? await locks.read(name, { ttl: TTL })
              : i % 10 === 1
                ? await locks.semaphore(name, { limit: 2 }).acquire({ ttl: TTL })
                : await locks.acquire(name, { ttl: TTL });
          if (i % 7 === 0) assert.equal(await other.tryAcquire(name), null);
          if (i % 2 === 0) await lock.release();
        }
      }),
    );
    // Every lock was taken by now, so every key must be gone a ttl from now (SCAN never returns a key
    // past its expiry); the slack is the test's own latency.
    const locked = performance.now();
    const held = (await allKeys(observer, prefix)).length;
    assert.ok(held >= 1_000, `the unreleased leases are there meanwhile (${held} keys)`);
    await until(
      async () => (await allKeys(observer, prefix)).length === 0,
      TTL + 1_000 - (performance.now() - locked),
      'keys left after the ttl',
    );
    await Promise.all([locks.close(), other.close()]);
  });

  test('fences rise across release, expiry and a restart that lost everything, with no counter kept', async () => {
    const observer = io(node);
    const locks = new Locksmith(redisBackend({ client: io(node), prefix: 'life:' }), { ttl: 200 });
    const fences: bigint[] = [];
    const released = await locks.acquire('fence:life');
    fences.push(released.fence);
    await released.release();
    const expired = await locks.acquire('fence:life', { autoRenew: false });
    fences.push(expired.fence);
    await until(async () => (await observer.exists(keysFor('life:', 'fence:life').lease)) === 0, 2_000, 'expiry');
    assert.deepEqual(await allKeys(observer, 'life:'), []);
    fences.push((await locks.acquire('fence:life', { ttl: 5_000 })).fence);
    await node.kill();
    await node.restart();
    for (let i = 0; fences.length < 4; i++) {
      try {
        fences.push((await locks.acquire('fence:life')).fence);
      } catch (error) {
        if (i > 50) throw error;
        await delay(50); // the client reconnects
      }
    }
    for (let i = 1; i < fences.length; i++) assert.ok(fences[i]! > fences[i - 1]!, fences.join(' '));
    await locks.close();
  });
});

describe('values the backend did not write', () => {
  let node: RedisNode;
  before(async () => {
    node = await RedisNode.start();
  });

  test('inspect on a foreign value is a LockError with the reply as cause, never "free"', async () => {
    const observer = io(node);
    const locks = new Locksmith(redisBackend({ client: io(node) }));
    const lease = (name: string): string => keysFor('locksmith:', name).lease;
    await observer.rpush(lease('foreign:list'), 'x');
    await observer.set(lease('foreign:string'), 'not a lease');
    await observer.set(lease('foreign:no-fence'), 'owner\nabc');
    for (const name of ['foreign:list', 'foreign:string', 'foreign:no-fence']) {
      const error = await locks.inspect(name).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof LockError, `${name}: ${String(error)}`);
      assert.ok(error.cause !== undefined, `${name}: the reply travels as cause`);
      assert.equal(error.key, name);
    }
    // Nor is such a lock free to take.
    assert.equal(await locks.tryAcquire('foreign:string'), null);
    await assert.rejects(locks.tryAcquire('foreign:list'), LockAcquisitionError);
    await locks.close();
  });

  test('a stored fence at or above 2^53 is refused instead of repeated', async () => {
    const observer = io(node);
    const backend = redisBackend({ client: io(node) });
    const k = keysFor('locksmith:', 'fence:huge');
    // A released Redlock lease keeps its fence as "\n<fence>": the next grant must go above it.
    await observer.set(k.lease, '\n9007199254740993', 'PX', 10_000);
    const error = await backend.acquire({ key: 'fence:huge', owner: 'a', ttl: 1_000, mode: 'exclusive' }).catch((e: unknown) => e);
    assert.ok(error instanceof LockAcquisitionError, String(error));
    assert.match(error.message, /2\^53/);
    await observer.set(k.lease, '\n9007199254740000', 'PX', 10_000);
    const granted = await backend.acquire({ key: 'fence:huge', owner: 'a', ttl: 1_000, mode: 'exclusive' });
    assert.ok(granted.granted && granted.fence === 9007199254740001n, JSON.stringify(String(granted.granted && granted.fence)));
    await backend.close();
  });
});
