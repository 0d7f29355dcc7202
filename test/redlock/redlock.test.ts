// Redlock over five real redis-server nodes that the tests kill, pause and restart.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { redlockBackend } from '../../src/backends/redlock/index.js';
import { LockAcquisitionError, LockArgumentError, Locksmith, LockTimeoutError } from '../../src/index.js';
import { wakeGaps } from '../support/handoff.js';
import { TcpProxy } from '../support/proxy.js';
import { RedisNode, stopAll } from '../support/redis.js';

const NODE_TIMEOUT = 100;
let nodes: RedisNode[];
const clients: Redis[] = [];
const open: Locksmith[] = [];

function locksmith(): Locksmith {
  const set = nodes.map((n) => {
    const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    c.on('error', () => undefined);
    return c;
  });
  clients.push(...set);
  const locks = new Locksmith(redlockBackend({ clients: set, nodeTimeout: NODE_TIMEOUT }), { ttl: 5_000, wait: 0 });
  locks.on('error', () => undefined);
  open.push(locks);
  return locks;
}

async function healAll(): Promise<void> {
  for (const n of nodes) {
    n.resume();
    try {
      await n.cli('PING');
    } catch {
      await n.restart();
    }
  }
  await new Promise((r) => setTimeout(r, 300)); // clients reconnect (retryStrategy 100 ms)
}

before(async () => {
  nodes = await Promise.all([0, 1, 2, 3, 4].map(() => RedisNode.start()));
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close().catch(() => undefined)));
  for (const c of clients.splice(0)) c.disconnect();
  await healAll();
});
after(async () => stopAll());

describe('redlock', () => {
  test('2 of 5 nodes down: acquire still succeeds, and excludes others', async () => {
    await nodes[0]!.kill();
    await nodes[1]!.kill();
    const [a, b] = [locksmith(), locksmith()];
    const lock = await a.acquire('minority-down');
    assert.ok(lock.held);
    await assert.rejects(b.acquire('minority-down'), LockTimeoutError);
    await lock.release();
  });

  test('3 of 5 nodes down: fails fast with per-node details', async () => {
    await Promise.all([nodes[0]!.kill(), nodes[1]!.kill(), nodes[2]!.kill()]);
    const a = locksmith();
    const t0 = performance.now();
    const err = await a.acquire('majority-down').catch((e: unknown) => e);
    const took = performance.now() - t0;
    assert.ok(err instanceof LockAcquisitionError, String(err));
    assert.equal(err.nodes.length, 5);
    assert.equal(err.nodes.filter((n) => n.outcome === 'error' || n.outcome === 'timeout').length, 3);
    assert.equal(err.nodes.filter((n) => n.outcome === 'granted').length, 2);
    assert.match(err.message, /no quorum/);
    assert.ok(took < NODE_TIMEOUT * 3 + 200, `failed after ${took.toFixed(0)} ms`);
  });

  test('a paused node does not stall acquisition beyond the per-node timeout', async () => {
    nodes[4]!.pause();
    const a = locksmith();
    const t0 = performance.now();
    const lock = await a.acquire('paused-node');
    assert.ok(performance.now() - t0 < NODE_TIMEOUT * 2 + 200, `took ${(performance.now() - t0).toFixed(0)} ms`);
    await lock.release();
  });

  test('fences keep increasing across holders when a node restarts empty in between', async () => {
    const [a, b] = [locksmith(), locksmith()];
    const first = await a.acquire('fenced');
    await first.release();
    await nodes[2]!.kill();
    await nodes[2]!.restart(); // empty: its counter starts again from the clock
    await new Promise((r) => setTimeout(r, 300));
    const second = await b.acquire('fenced');
    assert.ok(second.fence > first.fence);
    await second.release();
    const third = await a.acquire('fenced');
    assert.ok(third.fence > second.fence);
    await third.release();
  });

  test('a fence kept by a release goes on above it, and one at 2^53 is refused', async () => {
    const locks = locksmith();
    // A released lease keeps its fence as "\n<fence>" on each node. Ahead of every clock (and so of
    // any proposal), the next fence is that one plus one, on every node alike.
    await Promise.all(nodes.map((n) => n.cli('SET', 'locksmith:{kept}:lease', '\n9007199254740000', 'PX', '10000')));
    const lock = await locks.acquire('kept');
    assert.equal(lock.fence, 9007199254740001n);
    await lock.release();
    await Promise.all(nodes.map((n) => n.cli('SET', 'locksmith:{kept}:lease', '\n9007199254740993', 'PX', '10000')));
    const error = await locks.acquire('kept').catch((e: unknown) => e);
    assert.ok(error instanceof LockAcquisitionError, String(error));
    assert.match(JSON.stringify(error.nodes), /2\^53/);
  });

  test('a release keeps each node its own fence, and a fence passed with another owner releases nothing', async () => {
    const set = nodes.map((n) => {
      const c = new Redis(n.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      clients.push(c);
      return c;
    });
    const backend = redlockBackend({ clients: set, nodeTimeout: NODE_TIMEOUT });
    const locks = new Locksmith(backend, { ttl: 5_000, wait: 0 });
    open.push(locks);
    // Nodes may record fences below the lock's: one that chose its own and was not raised (the
    // quorum had the lock's fence already), one where a waiter was refused meanwhile (marked "w").
    const lease = 'locksmith:{own-fence}:lease';
    const lock = await locks.acquire('own-fence');
    const values = async (): Promise<string[]> => Promise.all(nodes.map(async (n) => (await n.cli('GET', lease)).replace(/\n$/, '')));
    await Promise.all(set.map((c) => c.ping())); // the grant has run on every node, stragglers too
    const below = [lock.fence - 7n, lock.fence - 5n];
    const own = (f: bigint): string => `${lock.owner}\n${f}`;
    const granted: string[] = [own(lock.fence), own(lock.fence), own(lock.fence), `${own(below[0]!)}w`, own(below[1]!)];
    await Promise.all(nodes.map((n, i) => n.cli('SET', lease, granted[i]!, 'KEEPTTL')));
    const held = await values();
    // The fence names a lease, never its owner: another owner passing it releases nothing.
    assert.equal(await backend.release('own-fence', 'intruder', lock.fence), false);
    assert.equal(await backend.release('own-fence', `${lock.owner}\n${lock.fence}`, lock.fence), false);
    assert.deepEqual(await values(), held);
    await lock.release();
    const kept = [lock.fence, lock.fence, lock.fence, ...below].map((f) => `\n${f}`);
    assert.deepEqual(await values(), kept);
    // Without a fence (a withdrawn attempt), the owner alone finds the lease.
    const again = await locks.acquire('own-fence');
    assert.ok(again.fence > lock.fence);
    assert.equal(await backend.release('own-fence', again.owner), true);
    assert.equal(await locks.inspect('own-fence'), null);
  });

  test('a node that pauses right after granting cannot hang the write-back of the fence', async () => {
    const proxy = await TcpProxy.start(nodes[4]!.port);
    try {
      const set = nodes.map((n, i) => {
        const c = new Redis(i === 4 ? proxy.port : n.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
        c.on('error', () => undefined);
        clients.push(c);
        return c;
      });
      const locks = new Locksmith(redlockBackend({ clients: set, nodeTimeout: NODE_TIMEOUT }), { ttl: 5_000, wait: 0 });
      locks.on('error', () => undefined);
      open.push(locks);
      await (await locks.acquire('sync-pause')).release(); // the nodes said who they are; the clock offset is known
      // Three nodes left, so all three must grant. Node 2 keeps a fence a minute ahead and grants
      // above it; nodes 3 and 4 take the proposal and must be raised to that fence before the lock is
      // used. Node 4 answers its grant and then nothing more.
      await Promise.all([nodes[0]!.kill(), nodes[1]!.kill()]);
      await nodes[2]!.cli('SET', 'locksmith:{sync-pause}:lease', `\n${BigInt(Date.now() + 60_000) * 1000n}`, 'PX', '10000');
      proxy.blackholeAfterNextAnswer();
      const t0 = performance.now();
      const error = await locks.acquire('sync-pause').catch((e: unknown) => e);
      const took = performance.now() - t0;
      assert.ok(error instanceof LockTimeoutError || error instanceof LockAcquisitionError, String(error));
      assert.ok(took < 2_000, `settled after ${took.toFixed(0)} ms (node timeout ${NODE_TIMEOUT} ms)`);
    } finally {
      await proxy.close();
    }
  });

  test('nodes that lost their scripts are sent the source, and still vote', async () => {
    const locks = locksmith();
    for (let round = 0; round < 2; round++) {
      // Every node, then a minority: each node answers NOSCRIPT on its own, at its own time.
      const flushed = round === 0 ? nodes : nodes.slice(0, 2);
      await Promise.all(flushed.map((n) => n.cli('SCRIPT', 'FLUSH')));
      const lock = await locks.acquire(`noscript:${round}`);
      await Promise.all(flushed.map((n) => n.cli('SCRIPT', 'FLUSH')));
      await lock.extend();
      await Promise.all(flushed.map((n) => n.cli('SCRIPT', 'FLUSH')));
      await lock.release();
      assert.equal(await locks.inspect(`noscript:${round}`), null);
    }
  });

  test('a minority restarted empty does not let a second holder in', async () => {
    const [a, b] = [locksmith(), locksmith()];
    const lock = await a.acquire('no-split', { ttl: 10_000 });
    await Promise.all([nodes[0]!.kill(), nodes[1]!.kill()]);
    await Promise.all([nodes[0]!.restart(), nodes[1]!.restart()]); // they forgot the lock
    await new Promise((r) => setTimeout(r, 300));
    await assert.rejects(b.acquire('no-split'), LockTimeoutError, 'the three nodes that remember still refuse');
    assert.ok(lock.held);
    await lock.release();
  });

  test('a renewed lease outlives, on a majority of nodes, what the holder believes by the drift allowance', async () => {
    // Acquiring discounts clock drift from the validity; a renewal must too, or a node whose clock
    // runs fast (by up to driftFactor, default 0.01) could end the lease while the holder still believes in it.
    const a = locksmith();
    const lock = await a.acquire('drift', { ttl: 10_000 });
    await lock.extend(10_000);
    const left = await Promise.all(nodes.map(async (n) => Number((await n.cli('PTTL', 'locksmith:{drift}:lease')).trim())));
    const believed = lock.expiresAt - Date.now();
    // 1 ms for the rounding of PTTL and expiresAt to whole ms. The extension settles at a quorum, so
    // stragglers may not have it yet: the guarantee is that a majority outlives the holder's belief.
    const outliving = left.filter((ms) => ms + 1 >= believed * 1.01).length;
    assert.ok(
      outliving >= 3,
      `only ${outliving} of 5 nodes keep it past the holder's belief (${believed} ms × 1.01): ${left.join(', ')} ms`,
    );
    await lock.release();
  });

  test('clients that reach one server are refused before any lock', async () => {
    const same = [0, 1, 2].map(() => {
      const c = new Redis(nodes[0]!.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      clients.push(c);
      return c;
    });
    const locks = new Locksmith(redlockBackend({ clients: same }), { wait: 0 });
    open.push(locks);
    const error = await locks.acquire('same-server').catch((e: unknown) => e);
    assert.ok(error instanceof LockArgumentError, String(error));
    assert.match(error.message, /same Redis server/);
    assert.equal((await nodes[0]!.cli('EXISTS', 'locksmith:{same-server}:lease')).trim(), '0', 'nothing was locked');
  });

  test('waiters are woken by the release, not by their backoff', async () => {
    const a = locksmith();
    locksmith(); // its five clients serve a waiter that would poll only every 5 s
    const slow = new Locksmith(redlockBackend({ clients: clients.slice(-5), nodeTimeout: NODE_TIMEOUT }), {
      backoff: { initial: 5_000, max: 5_000 },
    });
    open.push(slow);
    const gaps = await wakeGaps(a, slow, 10);
    assert.ok(gaps[5]! < 200, `median handoff ${gaps[5]!.toFixed(1)} ms (backoff would be 5000 ms)`);
  });

  test('with 2 nodes down, a waiter blocked by one stray lease retries when it ends, not after its backoff', async () => {
    // A release that reached only 2 of the 3 live nodes leaves one lease behind: the 3 live nodes must
    // all grant, so the waiter is blocked by that lease alone and no release will ever wake it.
    const a = locksmith();
    locksmith(); // its five clients serve the waiter below
    const stray = await a.acquire('stray', { ttl: 600 });
    await Promise.all([nodes[0]!.kill(), nodes[1]!.kill()]);
    const lease = 'locksmith:{stray}:lease';
    await Promise.all([nodes[2]!.cli('DEL', lease), nodes[3]!.cli('DEL', lease)]);
    const patient = new Locksmith(redlockBackend({ clients: clients.slice(-5), nodeTimeout: NODE_TIMEOUT }), {
      backoff: { initial: 5_000, max: 5_000 },
    });
    open.push(patient);
    const t0 = performance.now();
    const lock = await patient.acquire('stray', { wait: 3_000 });
    const took = performance.now() - t0;
    assert.ok(lock.fence > stray.fence);
    assert.ok(took < 1_200, `granted after ${took.toFixed(0)} ms (the stray lease had at most 600 ms left; the backoff is 5000)`);
    await lock.release();
  });

  test('read locks and semaphores are refused clearly, before any I/O', async () => {
    const a = locksmith();
    await assert.rejects(a.read('r'), LockArgumentError);
    await assert.rejects(a.semaphore('s', { limit: 2 }).acquire(), LockArgumentError);
    for (const o of [
      { clients: [] },
      { clients: [1, 2] },
      { clients: clients.slice(0, 3), driftFactor: 2 },
      { clients: clients.slice(0, 3), nodeTimeout: 0 },
      { clients: clients.slice(0, 3), quorum: 2 },
    ]) {
      assert.throws(() => redlockBackend(o), LockArgumentError);
    }
  });
});
