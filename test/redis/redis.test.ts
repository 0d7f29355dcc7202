// The Redis backend against real redis-server processes: fencing across a server that lost its data,
// faults (restart, paused server, dropped connection), wake-up latency, Cluster key layout, bad input.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { Redis as Redis6 } from 'ioredis-v6';
import { createClient } from 'redis';
import { createClient as createClientV5 } from 'redis-v5';
import { keysFor, redisBackend } from '../../src/backends/redis/index.js';
import { LockAcquisitionError, LockArgumentError, LockExpiredError, Locksmith, LockTimeoutError } from '../../src/index.js';
import { wakeGaps } from '../support/handoff.js';
import { disconnectClients, ioClient as io, RedisNode, startCluster, stopAll } from '../support/redis.js';

const clients: { disconnect(): void }[] = [];
after(async () => {
  for (const c of clients) c.disconnect();
  disconnectClients();
  await stopAll();
});

function aborted(signal: AbortSignal, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason);
    const timer = setTimeout(() => reject(new Error(`not aborted within ${ms} ms`)), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(signal.reason);
    });
  });
}

describe('redis backend', () => {
  let node: RedisNode;
  before(async () => {
    node = await RedisNode.start();
  });

  test('a refusal just before the holder expires still says when to retry (a lease in its last ms)', async () => {
    // PTTL answers 0 in a lease's last millisecond; read as "unknown", a woken waiter would sleep its
    // whole slow poll (a second) past an expiry that publishes nothing. Ask until the lease is gone.
    const backend = redisBackend({ client: io(node) });
    let unknown = 0;
    let asked = 0;
    for (let i = 0; i < 10; i++) {
      for (const mode of ['exclusive', 'shared'] as const) {
        const key = `last-ms:${i}:${mode}`;
        await backend.acquire({ key, owner: 'a', ttl: 150, mode: 'exclusive' });
        const rw = mode === 'shared' ? { rw: 'reader-preference' as const } : {};
        for (;;) {
          const r = await backend.acquire({ key, owner: 'b', ttl: 1_000, mode, ...rw });
          if (r.granted !== false) break;
          asked++;
          if (r.retryAfter === undefined) unknown++;
        }
      }
    }
    assert.equal(unknown, 0, `${unknown} of ${asked} refusals without a retry time`);
    await backend.close();
  });

  test('fences keep increasing after the server restarts empty', async () => {
    const locks = new Locksmith(redisBackend({ client: io(node) }));
    const before = await locks.acquire('fence:restart');
    await before.release();
    await node.kill();
    await node.restart(); // no persistence: every key, the fence counter included, is gone
    let after;
    for (let i = 0; !after; i++) {
      try {
        after = await locks.acquire('fence:restart');
      } catch (error) {
        if (i > 50) throw error;
        await delay(50); // the client reconnects
      }
    }
    assert.ok(after.fence > before.fence, `${after.fence} after ${before.fence}`);
    await after.release();
    await locks.close();
  });

  test('a restart that loses a held lock aborts its signal and emits lost, without a crash', async () => {
    const locks = new Locksmith(redisBackend({ client: io(node) }));
    const lost: string[] = [];
    locks.on('lost', (e) => lost.push(e.key));
    locks.on('error', () => undefined);
    const lock = await locks.acquire('fault:restart', { ttl: 600, autoRenew: true });
    await node.kill();
    await node.restart();
    const reason = await aborted(lock.signal, 3_000);
    assert.ok(reason instanceof LockExpiredError);
    assert.deepEqual(lost, ['fault:restart']);
    await assert.rejects(lock.release());
    await locks.close();
  });

  test('a server paused past the ttl: the holder learns it lost the lock; after resume others get it', async () => {
    const [a, b] = [
      new Locksmith(redisBackend({ client: io(node, { commandTimeout: 200 }) })),
      new Locksmith(redisBackend({ client: io(node) })),
    ];
    a.on('error', () => undefined);
    const lock = await a.acquire('fault:pause', { ttl: 400, autoRenew: true });
    node.pause();
    try {
      assert.ok((await aborted(lock.signal, 2_000)) instanceof LockExpiredError, 'renewals cannot land, so the lease runs out');
    } finally {
      node.resume();
    }
    const next = await b.acquire('fault:pause', { wait: 3_000 });
    assert.ok(next.fence > lock.fence);
    await next.release();
    await Promise.all([a.close(), b.close()]);
  });

  test('a dropped connection during a wait gives a clear error or recovers, never a hang past wait', async () => {
    const holder = new Locksmith(redisBackend({ client: io(node) }));
    const lock = await holder.acquire('fault:drop', { ttl: 10_000 });
    const client = io(node, { commandTimeout: 300 });
    const waiter = new Locksmith(redisBackend({ client }));
    const t0 = performance.now();
    const waiting = waiter.acquire('fault:drop', { wait: 1_500 }).then(
      () => 'acquired',
      (e: unknown) => e,
    );
    await delay(100);
    await node.cli('CLIENT', 'KILL', 'TYPE', 'normal'); // drops every client connection, ours included
    const outcome = await waiting;
    const took = performance.now() - t0;
    assert.ok(outcome instanceof LockTimeoutError || outcome instanceof LockAcquisitionError, String(outcome));
    assert.ok(took < 1_500 + 1_000, `settled after ${took.toFixed(0)} ms`);
    await lock.release().catch(() => undefined);
    await Promise.all([holder.close(), waiter.close()]);
  });

  test('waiters are woken by the release, well before the safety poll', async () => {
    const [a, b] = [
      new Locksmith(redisBackend({ client: io(node) })),
      new Locksmith(redisBackend({ client: io(node) }), { backoff: { initial: 5_000, max: 5_000 } }),
    ];
    const gaps = await wakeGaps(a, b, 20);
    assert.ok(gaps[10]! < 20, `median handoff ${gaps[10]!.toFixed(2)} ms`);
    await Promise.all([a.close(), b.close()]);
  });

  test('fair: waiters from separate processes are served in arrival order', async () => {
    const holder = new Locksmith(redisBackend({ client: io(node), fair: true }));
    const lock = await holder.acquire('fair:order');
    const order: number[] = [];
    const waiters: Promise<void>[] = [];
    const others: Locksmith[] = [];
    for (let i = 0; i < 6; i++) {
      const locks = new Locksmith(redisBackend({ client: io(node), fair: true }), { wait: 20_000 });
      others.push(locks);
      waiters.push(
        locks.acquire('fair:order').then(async (l) => {
          order.push(i);
          await delay(5);
          await l.release();
        }),
      );
      await delay(30); // each is refused and queued before the next arrives
    }
    await lock.release();
    await Promise.all(waiters);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
    await Promise.all([holder, ...others].map((l) => l.close()));
  });

  test('fair: a waiter that died loses its place after queueTimeout; one that gave up leaves at once', async () => {
    const client = io(node);
    const a = new Locksmith(redisBackend({ client, fair: true, queueTimeout: 300 }));
    const lock = await a.acquire('fair:dead');
    // A waiter that queues and then vanishes (its process died): it never retries nor withdraws.
    const ghost = redisBackend({ client: io(node), fair: true, queueTimeout: 300 });
    assert.equal((await ghost.acquire({ key: 'fair:dead', owner: 'ghost', ttl: 1_000, mode: 'exclusive', queue: true })).granted, false);
    // One that gives up withdraws its place.
    const quitter = new Locksmith(redisBackend({ client: io(node), fair: true, queueTimeout: 300 }));
    await assert.rejects(quitter.acquire('fair:dead', { wait: 100 }), LockTimeoutError);
    await lock.release();
    const t0 = performance.now();
    const next = await a.acquire('fair:dead', { wait: 5_000 });
    const waited = performance.now() - t0;
    assert.ok(waited < 1_500, `the ghost held the line for ${waited.toFixed(0)} ms`);
    assert.ok(waited >= 100, 'the ghost did hold the line until its place expired');
    await next.release();
    await Promise.all([a.close(), quitter.close(), ghost.close()]);
  });

  test("handover: a release gives the lease to this backend's waiter, fenced higher, its ttl on the server", async () => {
    const backend = redisBackend({ client: io(node) });
    const observer = io(node);
    const k = keysFor('locksmith:', 'handover:basic');
    const first = await backend.acquire({ key: 'handover:basic', owner: 'a', ttl: 10_000, mode: 'exclusive' });
    assert.ok(first.granted);
    const armed = new AbortController(); // as the core does: the wait is armed before the try
    void backend.waitForChange!('handover:basic', armed.signal);
    const refused = await backend.acquire({ key: 'handover:basic', owner: 'b', ttl: 5_000, mode: 'exclusive', queue: true, wait: 10_000 });
    assert.equal(refused.granted, false);
    assert.equal(await backend.release('handover:basic', 'a'), true);
    // Before b asks again, the server already has it as b's, with b's ttl.
    const held = await observer.get(k.lease);
    // The value carries the mark of a refusal ("w"): the next release wakes waiters.
    assert.match(String(held), /^b\n\d+w$/);
    const pttl = await observer.pttl(k.lease);
    assert.ok(pttl > 0 && pttl <= 5_000, `pttl ${pttl}`);
    const sent = performance.now();
    const second = await backend.acquire({ key: 'handover:basic', owner: 'b', ttl: 5_000, mode: 'exclusive', queue: true, wait: 10_000 });
    assert.ok(second.granted);
    assert.ok(second.fence > first.fence, `${second.fence} after ${first.fence}`);
    assert.equal(`${second.fence}w`, String(held).split('\n')[1]);
    // Counted from before the release was sent, so no longer than the server keeps it.
    assert.ok(second.validity !== undefined && second.validity <= 5_000 - (performance.now() - sent));
    assert.equal(await backend.release('handover:basic', 'b'), true);
    assert.equal(await observer.exists(k.lease), 0);
    armed.abort();
    await backend.close();
  });

  test('handover: only an owner refused with a wait armed is handed the lease (not one queued behind it)', async () => {
    const backend = redisBackend({ client: io(node) });
    const observer = io(node);
    await backend.acquire({ key: 'handover:unarmed', owner: 'a', ttl: 10_000, mode: 'exclusive' });
    await backend.acquire({ key: 'handover:unarmed', owner: 'b', ttl: 10_000, mode: 'exclusive', queue: true, wait: 10_000 });
    await backend.release('handover:unarmed', 'a');
    assert.equal(await observer.exists(keysFor('locksmith:', 'handover:unarmed').lease), 0);
    await backend.close();
  });

  test('handover: a waiter that gives up instead releases what it was handed', async () => {
    const backend = redisBackend({ client: io(node) });
    const observer = io(node);
    const k = keysFor('locksmith:', 'handover:gave-up');
    await backend.acquire({ key: 'handover:gave-up', owner: 'a', ttl: 10_000, mode: 'exclusive' });
    const armed = new AbortController();
    void backend.waitForChange!('handover:gave-up', armed.signal);
    await backend.acquire({ key: 'handover:gave-up', owner: 'b', ttl: 10_000, mode: 'exclusive', queue: true, wait: 10_000 });
    const released = backend.release('handover:gave-up', 'a');
    // b's withdrawal (the core's release when a waiter gives up) is sent while the handover is in flight.
    const withdrawn = backend.release('handover:gave-up', 'b');
    assert.equal(await released, true);
    assert.equal(await withdrawn, true);
    assert.equal(await observer.exists(k.lease), 0);
    // Nothing of it is left: b asking again later is a fresh grant, not the old handover.
    const again = await backend.acquire({ key: 'handover:gave-up', owner: 'b', ttl: 10_000, mode: 'exclusive' });
    assert.ok(again.granted);
    await backend.release('handover:gave-up', 'b');
    armed.abort();
    await backend.close();
  });

  test('handover to a waiter that died: the lease ends by its ttl on the server', async () => {
    const client = io(node);
    const observer = io(node);
    const k = keysFor('locksmith:', 'handover:dead');
    const backend = redisBackend({ client });
    await backend.acquire({ key: 'handover:dead', owner: 'a', ttl: 10_000, mode: 'exclusive' });
    const armed = new AbortController();
    void backend.waitForChange!('handover:dead', armed.signal);
    await backend.acquire({ key: 'handover:dead', owner: 'b', ttl: 300, mode: 'exclusive', queue: true, wait: 10_000 });
    await backend.release('handover:dead', 'a');
    // b never asks again nor gives up (its process is gone): only the server's expiry ends its lease.
    const pttl = await observer.pttl(k.lease);
    assert.ok(pttl > 0 && pttl <= 300, `pttl ${pttl}`);
    const other = new Locksmith(redisBackend({ client: io(node) }));
    const lock = await other.acquire('handover:dead', { wait: 5_000 });
    assert.ok(lock.fence > 0n);
    await lock.release();
    await other.close();
    armed.abort();
    await backend.close();
  });

  test('handover through the core: local waiters get the lock in turn, fences rising, each released', async () => {
    const locks = new Locksmith(redisBackend({ client: io(node) }), { ttl: 5_000, wait: 10_000 });
    const observer = io(node);
    const order: number[] = [];
    const fences: bigint[] = [];
    const holder = await locks.acquire('handover:core');
    const waiters = [1, 2, 3, 4].map(async (i) => {
      await delay(i * 20); // arrive in order
      const lock = await locks.acquire('handover:core');
      order.push(i);
      fences.push(lock.fence);
      assert.ok(lock.expiresAt <= Date.now() + 5_000);
      await lock.release();
    });
    await delay(150);
    await holder.release();
    await Promise.all(waiters);
    assert.deepEqual(order, [1, 2, 3, 4]);
    assert.ok(
      fences.every((f, i) => f > (i === 0 ? holder.fence : fences[i - 1]!)),
      fences.join(' '),
    );
    assert.equal(await observer.exists(keysFor('locksmith:', 'handover:core').lease), 0);
    await locks.close();
  });

  test('handover through the core: a waiter aborted as the lock is handed to it leaves nothing held', async () => {
    const locks = new Locksmith(redisBackend({ client: io(node) }), { ttl: 10_000, wait: 10_000 });
    const observer = io(node);
    const holder = await locks.acquire('handover:abort');
    const controller = new AbortController();
    const waiting = locks.acquire('handover:abort', { signal: controller.signal });
    await delay(50);
    const released = holder.release();
    controller.abort(new Error('gave up'));
    await assert.rejects(waiting, /gave up/);
    await released;
    const lease = keysFor('locksmith:', 'handover:abort').lease;
    for (let i = 0; (await observer.exists(lease)) === 1; i++) {
      assert.ok(i < 100, 'the handed lease was not given back');
      await delay(10);
    }
    await locks.close();
  });

  test('commands made in one tick leave in writes of 8 after the first, and every one is answered', async () => {
    const client = io(node);
    const backend = redisBackend({ client });
    await client.ping();
    // Count the socket's writes (a corked stream hands its buffered chunks to _writev at once).
    const stream = (client as unknown as { stream: { _writev?: (chunks: unknown[], cb: unknown) => void } }).stream;
    const writev = stream._writev!.bind(stream);
    const writes: number[] = [];
    stream._writev = (chunks, cb) => {
      writes.push(chunks.length);
      writev(chunks, cb);
    };
    try {
      const req = (i: number) => ({ key: `batch:${i}`, owner: `o${i}`, ttl: 5_000, mode: 'exclusive' as const });
      const grants = await Promise.all(Array.from({ length: 40 }, (_, i) => backend.acquire(req(i))));
      assert.ok(grants.every((g) => g.granted));
      // The first found nothing in flight and left at once, alone; the rest were held back.
      assert.deepEqual(writes, [8, 8, 8, 8, 7], `writes of ${writes.join(', ')}`);
      const released = await Promise.all(Array.from({ length: 40 }, (_, i) => backend.release(`batch:${i}`, `o${i}`)));
      assert.ok(released.every(Boolean));
      // One at a time, nothing is ever in flight: no command waits for a batch.
      writes.length = 0;
      for (let i = 0; i < 5; i++) {
        assert.ok((await backend.acquire(req(i))).granted);
        assert.ok(await backend.release(`batch:${i}`, `o${i}`));
      }
      assert.deepEqual(writes, []);
    } finally {
      stream._writev = writev;
      await backend.close();
    }
  });

  test('owners may contain newlines: a prefix of the holder is not the holder', async () => {
    const backend = redisBackend({ client: io(node) });
    const req = { key: 'owner:newline', ttl: 5_000, mode: 'exclusive' as const };
    const held = await backend.acquire({ ...req, owner: 'a\nb' });
    assert.ok(held.granted);
    if (!held.granted) return;
    // The fence a release may pass names a lease, never its owner (before any refusal marks the lease).
    for (const other of ['a', 'a\n', '\nb', 'b', `b\n${held.fence}`])
      assert.equal(await backend.release('owner:newline', other, held.fence), false, JSON.stringify(other));
    for (const other of ['a', 'a\n', '\nb', 'b']) {
      assert.equal(await backend.release('owner:newline', other), false, JSON.stringify(other));
      assert.equal(await backend.extend('owner:newline', other, 5_000), false, JSON.stringify(other));
      assert.equal((await backend.acquire({ ...req, owner: other })).granted, false, JSON.stringify(other));
    }
    const info = await backend.inspect('owner:newline');
    assert.deepEqual(
      info?.holders.map((h) => [h.owner, h.fence]),
      [['a\nb', held.fence]],
    );
    const again = await backend.acquire({ ...req, owner: 'a\nb' });
    assert.ok(again.granted && again.fence === held.fence, 'the holder itself re-enters with its fence');
    // With a fence that is not the lease's, the owner still decides; with its own, it is found at once.
    assert.equal(await backend.release('owner:newline', 'a\nb', held.fence + 1n), true);
    const next = await backend.acquire({ ...req, owner: 'a\nb' });
    assert.ok(next.granted && next.fence > held.fence);
    assert.equal(await backend.release('owner:newline', 'a\nb', next.fence), true);
    assert.equal(await backend.inspect('owner:newline'), null);
    await backend.close();
  });

  test('the short forms: a plain request that meets readers, and a release by a non-holder, take every key', async () => {
    // A plain exclusive acquire sends three keys, the exclusive holder's release two. Readers, an
    // announced writer and a lease that is gone are only seen with every key: these go the long way.
    const backend = redisBackend({ client: io(node) });
    const key = 'short:forms';
    const reader = await backend.acquire({ key, owner: 'r', ttl: 2_000, mode: 'shared' });
    assert.ok(reader.granted);
    const refused = await backend.acquire({ key, owner: 'w', ttl: 5_000, mode: 'exclusive' });
    assert.equal(refused.granted, false);
    assert.ok(
      !refused.granted && refused.retryAfter !== undefined && refused.retryAfter > 1_000 && refused.retryAfter <= 2_000,
      JSON.stringify(refused),
    );
    // A writer that waits announces itself (writer preference holds new readers back)…
    assert.equal((await backend.acquire({ key, owner: 'w2', ttl: 5_000, mode: 'exclusive', intent: 5_000, queue: true })).granted, false);
    assert.equal((await backend.acquire({ key, owner: 'r2', ttl: 5_000, mode: 'shared', writerPreference: true })).granted, false);
    // …and its release, though it holds nothing, withdraws the intent: readers are let in again.
    assert.equal(await backend.release(key, 'w2'), false);
    const r2 = await backend.acquire({ key, owner: 'r2', ttl: 5_000, mode: 'shared', writerPreference: true });
    assert.ok(r2.granted);
    assert.equal(await backend.release(key, 'r'), true, 'a reader releases through the long form');
    assert.equal(await backend.release(key, 'r2'), true);
    assert.equal(await backend.release(key, 'r2'), false, 'and only once');
    const writer = await backend.acquire({ key, owner: 'w', ttl: 5_000, mode: 'exclusive' });
    assert.ok(writer.granted && reader.granted && writer.fence > reader.fence, 'granted once the readers left');
    assert.equal(await backend.release(key, 'w'), true);
    assert.equal(await backend.inspect(key), null);
    await backend.close();
  });
  test('a server that lost its scripts is sent their source, on every client kind', async () => {
    // EVALSHA answers NOSCRIPT after a restart or SCRIPT FLUSH; each call then sends the source once.
    const admin = io(node);
    const kinds: [string, () => Promise<unknown>][] = [
      ['ioredis 5', async () => new Redis(node.port, '127.0.0.1')],
      ['ioredis 6', async () => new Redis6(node.port, '127.0.0.1')],
      ['node-redis 4', () => createClient({ url: `redis://127.0.0.1:${node.port}` }).connect()],
      ['node-redis 5', () => createClientV5({ url: `redis://127.0.0.1:${node.port}` }).connect()],
    ];
    for (const [kind, open] of kinds) {
      const client = (await open()) as { disconnect(): unknown };
      const backend = redisBackend({ client, prefix: 'noscript:' });
      try {
        for (let round = 0; round < 2; round++) {
          await admin.script('FLUSH');
          const key = `${kind}:${round}`;
          const grant = await backend.acquire({ key, owner: 'a', ttl: 5_000, mode: 'exclusive' });
          assert.equal(grant.granted, true, kind);
          await admin.script('FLUSH');
          assert.equal(await backend.extend(key, 'a', 5_000), true, kind);
          await admin.script('FLUSH');
          assert.equal(await backend.release(key, 'a', grant.granted ? grant.fence : undefined), true, kind);
          assert.equal(await backend.inspect(key), null, kind);
        }
      } finally {
        await backend.close();
        await client.disconnect();
      }
    }
  });

  test('bad options are rejected before any I/O', () => {
    const client = io(node);
    for (const o of [
      {},
      { client: {} },
      { client, prefix: 'a{b' },
      { client, prefix: 'x}' },
      { client, prefix: 'has space' },
      { client, prefix: 'p'.repeat(129) },
      { client, prefix: 5 },
      { client, colour: 1 },
      { client, fair: 'yes' },
      { client, queueTimeout: 5 },
      { client, queueTimeout: 1.5 },
    ]) {
      assert.throws(() => redisBackend(o as never), LockArgumentError, JSON.stringify(Object.keys(o)));
    }
  });

  test('every key of a lock shares one non-empty hash tag, whatever the name', () => {
    for (const name of ['plain', '}x', '{', 'a{b}c', '%7B', '{}', 'é:{/}']) {
      const keys: string[] = Object.values(keysFor('p:', name));
      const tags = keys.map((k) => /\{([^}]*)\}/.exec(k)?.[1]);
      assert.ok(tags[0], `tag for ${name}`);
      assert.ok(
        tags.every((t) => t === tags[0]),
        `${name}: ${keys.join(' ')}`,
      );
    }
    assert.notEqual(keysFor('p:', '{').lease, keysFor('p:', '%7B').lease, 'escaping keeps names distinct');
  });
});

describe('redis cluster', () => {
  let nodes: RedisNode[];
  let cluster: Cluster;
  before(async () => {
    nodes = await startCluster();
    cluster = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
    clients.push(cluster);
  });

  test('names with braces never cause CROSSSLOT; acquireAll spans slots', async () => {
    const locks = new Locksmith(redisBackend({ client: cluster }));
    const names = ['}x', '{', 'a{b}c', '{}', 'user:{42}', 'plain'];
    for (const name of names) {
      const lock = await locks.acquire(name);
      assert.equal((await locks.inspect(name))?.holders[0]?.fence, lock.fence);
      const r = await locks.read(`${name}:rw`);
      await r.release();
      await lock.release();
    }
    const group = await locks.acquireAll(names.map((n) => `group:${n}`));
    const slots = new Set(await Promise.all(group.keys.map((k) => cluster.cluster('KEYSLOT', keysFor('locksmith:', k).lease))));
    assert.ok(slots.size > 1, 'the keys really are in different slots');
    await group.release();
    await locks.close();
  });
});
