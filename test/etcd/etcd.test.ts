// The etcd backend's own tests on a real 3-member cluster (one for this file): bad options before any
// I/O, fences across a killed and restarted member and a paused leader, a client partitioned through
// the TCP proxy, and a client process paused (SIGSTOP) or killed past its session lease.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Etcd3 } from 'etcd3';
import { etcdBackend, type EtcdBackendOptions } from '../../src/backends/etcd/index.js';
import { LockAcquisitionError, LockArgumentError, LockExpiredError, Locksmith, type Lock, type LocksmithOptions } from '../../src/index.js';
import { EtcdCluster, type EtcdMember } from '../support/etcd.js';
import { TcpProxy } from '../support/proxy.js';
import { until } from '../support/until.js';

describe('etcd backend', () => {
  let cluster: EtcdCluster;
  const closers: (() => unknown)[] = [];
  before(async () => {
    cluster = await EtcdCluster.start();
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await cluster.stop();
  });

  function locksmith(
    options: Partial<EtcdBackendOptions> = {},
    defaults: LocksmithOptions = {},
    client: Etcd3 = cluster.client(),
  ): Locksmith {
    const locks = new Locksmith(etcdBackend({ client, leaseTtl: 10_000, commandTimeout: 1_000, ...options }), {
      ttl: 5_000,
      wait: 10_000,
      ...defaults,
    });
    locks.on('error', () => undefined);
    closers.push(
      () => locks.close().catch(() => undefined),
      () => client.close(),
    );
    return locks;
  }
  const name = (): string => `etcd:${randomUUID()}`;

  /** One of etcd's own gRPC counters for `method`, summed over the members. */
  async function grpcTotal(counter: string, method: string): Promise<number> {
    let n = 0;
    for (const m of cluster.members) n += await m.grpcCount(counter, method);
    return n;
  }
  /** Range RPCs the members have answered: a waiter's read of the line. */
  const rangeReads = (): Promise<number> => grpcTotal('grpc_server_handled_total', 'Range');
  /** Watch streams the members have opened. */
  const watchStreams = (): Promise<number> => grpcTotal('grpc_server_started_total', 'Watch');
  /** Txn and DeleteRange RPCs the members have answered: every write of a lock. */
  const writes = async (): Promise<number> =>
    (await grpcTotal('grpc_server_handled_total', 'Txn')) + (await grpcTotal('grpc_server_handled_total', 'DeleteRange'));
  /**
   * Resolves once `locks` has a waiter that made its attempts: behind a holder of the same backend,
   * the head waiter writes nothing (its key comes with the holder's release), so nothing shows in etcd.
   */
  const deferred = async (locks: Locksmith): Promise<void> => {
    await until(() => locks.stats().waiting === 1);
    await delay(100);
  };
  /** Resolves once `key` has `n` keys in line (held or waiting). */
  const inLine = (client: Etcd3, key: string, n: number): Promise<unknown> =>
    until(async () => (await client.getAll().prefix(`locksmith/${key}/`).keys()).length === n);

  test('the next waiter takes over with no read of its own: in this process from the release (one write), elsewhere from its watch', async () => {
    const raw = cluster.client();
    closers.push(() => raw.close());
    for (const where of ['here', 'elsewhere'] as const) {
      const holderSide = locksmith();
      const waiterSide = where === 'here' ? holderSide : locksmith();
      const key = name();
      const held = await holderSide.acquire(key);
      const waiting = waiterSide.acquire(key);
      if (where === 'here') {
        // Behind a holder of its own process the waiter writes nothing: its key comes with the release.
        await deferred(waiterSide);
        await inLine(raw, key, 1);
      } else {
        await inLine(raw, key, 2); // the holder's key and the waiter's
        await delay(100); // its last read of the line answered
      }
      const [reads, written] = [await rangeReads(), await writes()];
      await held.release();
      const next = await waiting;
      assert.ok(next.fence > held.fence);
      assert.equal(await rangeReads(), reads, `${where}: the waiter read the line again after the release`);
      if (where === 'here') assert.equal((await writes()) - written, 1, 'here: the handoff is one write');
      await next.release();
    }
  });

  test('handoffs on a busy name share one watch stream: it is not opened again per waiter', async () => {
    const raw = cluster.client();
    closers.push(() => raw.close());
    const locks = locksmith();
    const key = name();
    // Warm: the first wait opens the stream.
    const first = await locks.acquire(key);
    const warm = locks.acquire(key);
    await deferred(locks);
    await first.release();
    await (await warm).release();
    const before = await watchStreams();
    let handoffs = 0;
    await Promise.all(
      [0, 1, 2].map(async () => {
        for (let i = 0; i < 10; i++) {
          const lock = await locks.acquire(key);
          await delay(2);
          await lock.release();
          handoffs += 1;
        }
      }),
    );
    assert.equal(handoffs, 30);
    // etcd3 ends its stream when its last watch goes; each waiter's watch would open a new one.
    const opened = (await watchStreams()) - before;
    assert.ok(opened <= 1, `${opened} watch streams opened for ${handoffs} handoffs`);
  });

  test('a waiter behind a key of its own session is woken without a watch: release, expiry, another Locksmith, a lost session', async () => {
    // Waiters that missed a wake-up would poll only every 5 s.
    const slow = { backoff: { initial: 5_000, max: 5_000 } };
    const client = cluster.client();
    const backend = etcdBackend({ client, leaseTtl: 3_000, commandTimeout: 1_000 });
    const [one, two] = [
      new Locksmith(backend, { ttl: 2_000, wait: 8_000, ...slow }),
      new Locksmith(backend, { ttl: 2_000, wait: 8_000, ...slow }),
    ];
    for (const l of [one, two]) l.on('error', () => undefined);
    closers.push(
      () => two.close().catch(() => undefined),
      () => one.close().catch(() => undefined),
      () => client.close(),
    );
    const key = name();
    const timed = async (what: string, waiter: Promise<Lock>, bound: number, cause: () => Promise<unknown>): Promise<Lock> => {
      await deferred(two); // behind the holder
      const t0 = performance.now();
      await cause();
      const lock = await waiter;
      const took = performance.now() - t0;
      assert.ok(took < bound, `${what}: granted ${took.toFixed(0)} ms later`);
      return lock;
    };
    const streamsBefore = await watchStreams();
    // Released in another Locksmith on the same backend.
    let held = await one.acquire(key);
    held = await timed('release', two.acquire(key), 500, () => held.release());
    // Expired (never released) in the same Locksmith.
    const next = await timed('expiry', two.acquire(key), 2_000 + 800, () => Promise.resolve());
    assert.ok(next.fence > held.fence);
    // The session revoked on the server: holder and waiter lose their keys; the waiter starts again on a new session.
    const waiting = one.acquire(key, { wait: 15_000 });
    await deferred(one);
    await inLine(client, key, 1);
    const lease = (await client.getAll().prefix(`locksmith/${key}/`).exec()).kvs[0]!.lease;
    const t0 = performance.now();
    await (client as unknown as { leaseClient: { leaseRevoke(r: { ID: string }): Promise<unknown> } }).leaseClient.leaseRevoke({
      ID: lease,
    });
    const after = await waiting;
    assert.ok(performance.now() - t0 < 4_500, `lost session: granted ${(performance.now() - t0).toFixed(0)} ms later`);
    await after.release();
    // None of it needed a watch of its own (the handoffs on one name all stayed in this process).
    assert.ok((await watchStreams()) - streamsBefore <= 1);
  });

  test('a waiter carried by a release: giving up meanwhile, or the release answer lost, leaves no key behind', async () => {
    const raw = cluster.client();
    closers.push(() => raw.close());
    const keysOf = async (key: string): Promise<number> => (await raw.getAll().prefix(`locksmith/${key}/`).keys()).length;
    // Aborted in the same tick as the release that creates its key.
    const locks = locksmith();
    const key = name();
    const held = await locks.acquire(key);
    const ac = new AbortController();
    const waiting = locks.acquire(key, { signal: ac.signal });
    await deferred(locks);
    const released = held.release();
    ac.abort(new Error('gave up'));
    await assert.rejects(waiting, /gave up/);
    await released;
    await until(async () => (await keysOf(key)) === 0, 3_000);
    assert.ok(await locks.tryAcquire(key).then((l) => l?.release().then(() => true)), 'the name is free');

    // The release commits but its answer never comes: the carried waiter's key is there, unknown here.
    const member = cluster.members[0]!;
    const proxy = await TcpProxy.start(member.clientPort);
    closers.push(() => proxy.close());
    const far = locksmith({}, {}, cluster.client({ hosts: `http://127.0.0.1:${proxy.port}` }));
    const key2 = name();
    const first = await far.acquire(key2);
    // The waiter's own attempt goes into the black hole too, and may fail with it.
    const second = far.acquire(key2).catch((error: unknown) => {
      assert.ok(error instanceof LockAcquisitionError, String(error));
      return undefined;
    });
    await deferred(far);
    proxy.blackhole('answers');
    await assert.rejects(first.release());
    // It committed: the holder's key went, the waiter's came.
    await until(async () => {
      const kvs = (await raw.getAll().prefix(`locksmith/${key2}/`).exec()).kvs;
      return kvs.length === 1 && BigInt(kvs[0]!.create_revision) > first.fence;
    });
    proxy.pass();
    const next = await second;
    if (next) assert.ok(next.fence > first.fence);
    await next?.release();
    // Its key, of unknown outcome here, goes by its release or at its ttl (5 s).
    await until(async () => (await keysOf(key2)) === 0, 8_000);
    const again = await far.acquire(key2, { wait: 0 });
    await again.release();
  });

  test('bad options are refused before any I/O; a ttl past the session lease is refused', async () => {
    const client = cluster.client();
    for (const bad of [
      { client: {} },
      { client, prefix: 5 },
      { client, prefix: 'a\nb' },
      { client, leaseTtl: 1_500 },
      { client, leaseTtl: 500 },
      { client, commandTimeout: 0 },
      { client, colour: 'red' },
    ]) {
      assert.throws(() => etcdBackend(bad as never), LockArgumentError, JSON.stringify(Object.keys(bad)));
    }
    const locks = locksmith({ leaseTtl: 2_000 });
    const key = name();
    await assert.rejects(locks.acquire(key, { ttl: 2_001 }), LockArgumentError);
    assert.equal(await locks.isLocked(key), false);
    const lock = await locks.acquire(key, { ttl: 2_000 });
    await assert.rejects(lock.extend(3_000));
    await lock.release();
  });

  test('names are escaped: "a" and "a/b" are separate locks, and any owner string is data', async () => {
    const locks = locksmith();
    const base = name();
    const a = await locks.acquire(base, { owner: '__proto__/x%2F' });
    const ab = await locks.acquire(`${base}/b`, { wait: 0 });
    assert.deepEqual(
      (await locks.inspect(base))?.holders.map((h) => h.owner),
      ['__proto__/x%2F'],
    );
    await Promise.all([a.release(), ab.release()]);
  });

  test('fences are create revisions: strictly increasing across a SIGKILLed and restarted leader', async () => {
    const locks = locksmith({ commandTimeout: 2_000 });
    const key = name();
    let last = 0n;
    let failures = 0;
    const take = async (): Promise<void> => {
      // etcd3 sends a call to a member it cannot reach until the call's deadline, so one may fail while
      // the client learns that a member is gone: the caller tries again, as an application would.
      let lock: Lock | undefined;
      while (!lock) {
        lock = await locks.acquire(key).catch((e: unknown) => {
          if (!(e instanceof LockAcquisitionError) || ++failures > 3) throw e;
          return undefined;
        });
      }
      assert.ok(lock.fence > last, `fence ${lock.fence} after ${last}`);
      last = lock.fence;
      await lock.release();
    };
    for (let i = 0; i < 3; i++) await take();
    const leader = await cluster.leader();
    await leader.kill();
    try {
      // The client fails over to the other members; a new leader is elected within about a second.
      for (let i = 0; i < 3; i++) await take();
    } finally {
      await leader.start();
      await cluster.ready();
    }
    for (let i = 0; i < 3; i++) await take();
  });

  test('a paused leader (SIGSTOP): the holder keeps its lock, and the next holder gets a higher fence', async () => {
    const leader = await cluster.leader();
    const others = cluster.members.filter((m) => m !== leader).map((m: EtcdMember) => `http://${m.endpoint}`);
    const [a, b] = [
      locksmith({ leaseTtl: 3_000 }, {}, cluster.client({ hosts: others })),
      locksmith({}, {}, cluster.client({ hosts: others })),
    ];
    const key = name();
    const lock = await a.acquire(key, { ttl: 3_000, autoRenew: true });
    leader.pause();
    try {
      await until(async () => (await cluster.leader().catch(() => leader)) !== leader);
      await delay(3_500); // past the session lease: it must have been kept alive through the new leader
      assert.ok(lock.held);
      assert.equal(lock.signal.aborted, false);
      assert.equal(await b.tryAcquire(key), null);
      await lock.release();
      const next = await b.acquire(key, { wait: 0 });
      assert.ok(next.fence > lock.fence);
      await next.release();
    } finally {
      leader.resume();
    }
    await cluster.ready();
  });

  test('a client partitioned through the proxy loses its lock (signal, lost) before anyone else gets it', async () => {
    const member = cluster.members[0]!;
    const proxy = await TcpProxy.start(member.clientPort);
    closers.push(() => proxy.close());
    const partitioned = locksmith({ leaseTtl: 2_000 }, {}, cluster.client({ hosts: `http://127.0.0.1:${proxy.port}` }));
    const other = locksmith();
    const lost: unknown[] = [];
    partitioned.on('lost', (event) => lost.push(event));
    const key = name();
    const lock = await partitioned.acquire(key, { ttl: 2_000, autoRenew: true });
    let lostAt = Infinity;
    lock.signal.addEventListener('abort', () => (lostAt = performance.now()));
    proxy.blackhole();
    const next = await other.acquire(key, { wait: 10_000 });
    const grantedAt = performance.now();
    assert.ok(lock.signal.reason instanceof LockExpiredError, String(lock.signal.reason));
    assert.ok(lostAt < grantedAt, 'the partitioned holder heard of its loss before the next grant');
    assert.equal(lost.length, 1);
    assert.ok(next.fence > lock.fence);
    await next.release();
    proxy.pass();
    // Once the network heals, the partitioned client works again (on a fresh session lease) after
    // its calls queued in the black hole have failed.
    let again: Lock | null | undefined;
    await until(async () => (again = await partitioned.tryAcquire(key, { ttl: 2_000 }).catch(() => undefined)) != null, 15_000);
    assert.ok(again!.fence > next.fence);
    await again!.release();
  });

  test('the CLI takes --backend etcd://host:port,host:port and hands the fence to the command', () => {
    const bin = join(import.meta.dirname, '../../dist/esm/cli/main.js');
    if (!existsSync(bin)) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: join(import.meta.dirname, '../..') });
    const url = `etcd://${cluster.endpoints.join(',')}`;
    const run = (...args: string[]): { status: number | null; stdout: string } =>
      spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });
    const first = run('run', 'cli-etcd', '--backend', url, '--fence-env', 'F', '--', 'sh', '-c', 'echo "$F"');
    const second = run('run', 'cli-etcd', '--backend', url, '--fence-env', 'F', '--', 'sh', '-c', 'echo "$F"');
    assert.equal(first.status, 0);
    assert.equal(second.status, 0);
    assert.ok(BigInt(second.stdout.trim()) > BigInt(first.stdout.trim()));
    assert.equal(run('run', 'x', '--backend', 'etcd://', '--', 'true').status, 2);
    assert.equal(run('run', 'x', '--backend', 'etcd://a/b', '--', 'true').status, 2);
  });

  describe('client processes', () => {
    const children: ChildProcess[] = [];
    after(() => {
      for (const c of children) c.kill('SIGKILL');
    });
    function hold(key: string, leaseTtl: number): { proc: ChildProcess; lines: string[]; fence: Promise<bigint> } {
      const proc = spawn(
        process.execPath,
        ['--import', 'tsx', join(import.meta.dirname, 'child.ts'), cluster.endpoints.join(','), key, String(leaseTtl), String(leaseTtl)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.push(proc);
      const lines: string[] = [];
      const fence = new Promise<bigint>((resolve, reject) => {
        proc.stdout.on('data', (chunk: Buffer) => {
          for (const line of chunk.toString().split('\n').filter(Boolean)) {
            lines.push(line);
            if (line.startsWith('held ')) resolve(BigInt(line.slice(5)));
          }
        });
        proc.once('exit', () => reject(new Error('the holder exited')));
      });
      return { proc, lines, fence };
    }

    test('a holder paused (SIGSTOP) past its session lease loses the lock; when resumed it hears so', async () => {
      const key = name();
      const child = hold(key, 2_000);
      const fence = await child.fence;
      child.proc.kill('SIGSTOP');
      const other = locksmith();
      const t0 = performance.now();
      const next = await other.acquire(key, { wait: 10_000 });
      assert.ok(performance.now() - t0 >= 1_000, 'not before the session lease ran out');
      assert.ok(next.fence > fence);
      child.proc.kill('SIGCONT');
      await until(() => child.lines.includes('lost') && child.lines.includes('lost event'));
      assert.deepEqual(
        (await other.inspect(key))?.holders.map((h) => h.owner),
        [next.owner],
      );
      await next.release();
      child.proc.kill('SIGKILL');
    });

    test('a killed holder (SIGKILL) frees the lock when its session lease expires', async () => {
      const key = name();
      const child = hold(key, 2_000);
      const fence = await child.fence;
      child.proc.kill('SIGKILL');
      const next = await locksmith().acquire(key, { wait: 10_000 });
      assert.ok(next.fence > fence);
      await next.release();
    });
  });
});
