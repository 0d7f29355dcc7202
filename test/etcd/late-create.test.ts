// A create the backend gave up on may still commit: the member that took it has forwarded it to the
// leader, and if that link stalls, the create commits when it heals, after the attempt timed out and
// its cleanup went through on another member. The safety suite's node-pause stalled on exactly that:
// the late key was first in line, on a session that stayed alive, with nothing left here to delete
// it. The faults are real: the members' peer traffic runs through TCP proxies (support/etcd.ts), and
// black-holing a follower's proxy holds every raft message it sends, its forwarded proposals among
// them, in order until it heals; the backend reaches the cluster through one more proxy, as through
// a balancer, which can fail it over to the leader.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { LockAcquisitionError, Locksmith, type Lock } from '../../src/index.js';
import { EtcdCluster, type EtcdMember } from '../support/etcd.js';
import { faultHandling } from '../support/etcd-client.js';
import { TcpProxy } from '../support/proxy.js';
import { until } from '../support/until.js';

describe('etcd backend: a create that lands late', () => {
  let cluster: EtcdCluster;
  const closers: (() => unknown)[] = [];
  before(async () => {
    cluster = await EtcdCluster.start(3, { peerProxies: true });
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await cluster.stop();
  });

  /** A proxy in front of `member`'s client port, as a balancer would be. */
  async function balancer(member: EtcdMember): Promise<TcpProxy> {
    const proxy = await TcpProxy.start(member.clientPort);
    closers.push(() => proxy.close());
    return proxy;
  }

  /**
   * A backend whose only way to the cluster is `proxy`, under a prefix of its own (so its guard is
   * easy to find). Its client has no circuit breaker, as docs/backends/etcd.md advises: etcd3's would
   * refuse every call to its one host for 5 s after the timed-out create.
   */
  function backendThrough(proxy: TcpProxy, prefix: string): Locksmith {
    const client = cluster.client({ hosts: `http://127.0.0.1:${proxy.port}`, faultHandling });
    const locks = new Locksmith(etcdBackend({ client, prefix, leaseTtl: 5_000, commandTimeout: 1_000 }), { ttl: 500, wait: 0 });
    locks.on('error', () => undefined);
    closers.push(() => locks.close().catch(() => undefined));
    return locks;
  }

  /** Another backend, over every member directly. */
  function others(prefix: string): Locksmith {
    const locks = new Locksmith(etcdBackend({ client: cluster.client(), prefix, leaseTtl: 5_000, commandTimeout: 1_000 }), {
      ttl: 2_000,
      wait: 0,
    });
    closers.push(() => locks.close().catch(() => undefined));
    return locks;
  }

  /** A cleanup of an attempt whose outcome is unknown writes its session's guard key (guard.ts). */
  async function guardWritten(direct: Etcd3, prefix: string): Promise<boolean> {
    return (await direct.getAll().prefix(`${prefix}%guard/`).keys()).length > 0;
  }

  test('a create that commits after its attempt failed and its cleanup went through leaves no key in line', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((m) => m !== leader)!;
    const link = follower.peerProxy!;
    const proxy = await balancer(follower);
    const prefix = `late-${randomUUID()}/`;
    const locks = backendThrough(proxy, prefix);
    const atLeader = cluster.client({ hosts: `http://${leader.endpoint}` });
    // The session lease is granted before the fault.
    await (await locks.acquire(`etcd:${randomUUID()}`)).release();
    const key = `etcd:${randomUUID()}`;
    let before: bigint;
    // Raft's messages from the follower (its forwarded proposals among them) now wait in the proxy.
    link.blackhole();
    try {
      await assert.rejects(locks.acquire(key), LockAcquisitionError);
      // The balancer gives up on the follower: the backend's next connection reaches the leader.
      proxy.retarget(leader.clientPort);
      proxy.dropAll();
      // The attempt's cleanup (at its ttl) goes through on the leader while the create is held.
      await until(() => guardWritten(atLeader, prefix));
      before = BigInt((await atLeader.maintenance.status()).raftIndex);
    } finally {
      link.pass();
    }
    // A write through the follower travels the same link, behind the create: once it is answered,
    // the create has been decided, one way or the other.
    await cluster
      .client({ hosts: `http://${follower.endpoint}` })
      .put(`${prefix}behind`)
      .value('x');
    const now = BigInt((await atLeader.maintenance.status()).raftIndex);
    assert.ok(now >= before + 2n, `the held create never reached the leader (raft index ${before} → ${now})`);
    const lock = await others(prefix).tryAcquire(key);
    assert.ok(lock, 'a key of the late create holds the line');
    await lock.release();
    // The backend that cleaned up still creates keys (it knows where its guard is).
    const mine = await locks.tryAcquire(key);
    assert.ok(mine, 'the backend that cleaned up could not take a free lock');
    await mine.release();
  });

  test('a create sent while a cleanup is on its way does not cost its try: it learns where the guard is and goes again', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((m) => m !== leader)!;
    const link = follower.peerProxy!;
    const prefix = `late-${randomUUID()}/`;
    const locks = backendThrough(await balancer(follower), prefix);
    await (await locks.acquire(`etcd:${randomUUID()}`)).release();
    let trying: Promise<Lock | null>;
    // Transactions the follower has taken: the create, its cleanup, then the next try's create.
    const txns = (): Promise<number> => follower.grpcCount('grpc_server_started_total', 'Txn');
    const before = await txns();
    link.blackhole();
    try {
      await assert.rejects(locks.acquire(`etcd:${randomUUID()}`), LockAcquisitionError);
      // The attempt's cleanup (at its ttl) moves the guard; this backend will know where only when
      // its answer comes. The next create is sent meanwhile, with the guard as it was, and both wait
      // behind the first create on the follower's link.
      await until(async () => (await txns()) >= before + 2, 10_000, 25);
      trying = locks.tryAcquire(`etcd:${randomUUID()}`);
      await until(async () => (await txns()) >= before + 3, 10_000, 25);
    } finally {
      link.pass();
    }
    const lock = await trying;
    assert.ok(lock, 'a one-off try on a free lock was refused');
    await lock.release();
  });
});
