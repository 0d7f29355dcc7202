// The session's keep-alive stream on a member that takes keep-alives and never answers (one restarted
// after a majority loss and still catching up; here, a real member behind a proxy that holds its
// answers: it hears the client, which never hears back). The session opens a spare stream beside it,
// on a member the client picks at random, and the spare keeps the lease (session.ts).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Etcd3 } from 'etcd3';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { LockAcquisitionError, Locksmith, type Lock } from '../../src/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { faultHandling } from '../support/etcd-client.js';
import { TcpProxy } from '../support/proxy.js';
import { until } from '../support/until.js';

/** Tries before giving up on a spare that lands on another member (each lands on the quiet one with odds 1 in 3). */
const TRIES = 8;

describe('etcd backend: a keep-alive stream that never answers', () => {
  let cluster: EtcdCluster;
  let proxies: TcpProxy[];
  let direct: Etcd3;
  before(async () => {
    cluster = await EtcdCluster.start();
    direct = cluster.client();
    proxies = await Promise.all(cluster.members.map((m) => TcpProxy.start(m.clientPort)));
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await cluster.stop();
  });

  /** Keep-alive streams each member has seen opened (etcd's gRPC metrics). */
  const streams = (): Promise<number[]> =>
    Promise.all(cluster.members.map((m) => m.grpcCount('grpc_server_started_total', 'LeaseKeepAlive')));
  const total = (counts: number[]): number => counts.reduce((a, b) => a + b, 0);

  /** The session lease `lock`'s key is on, as etcd has it. */
  async function leaseOf(lock: Lock, prefix: string): Promise<string> {
    const kvs = (await direct.getAll().prefix(`${prefix}${lock.key}/`).exec()).kvs;
    assert.equal(kvs.length, 1);
    return kvs[0]!.lease;
  }

  /** A lock, trying again if a call went to the quiet member and waited out its deadline. */
  async function take(locks: Locksmith): Promise<Lock> {
    for (let tries = 1; ; tries++) {
      try {
        return await locks.acquire(`etcd:${randomUUID()}`);
      } catch (error) {
        if (!(error instanceof LockAcquisitionError) || tries >= 8) throw error;
      }
    }
  }

  /**
   * One backend: its first stream goes quiet, and the test checks that its session outlives the
   * lease's TTL. False when the spare too went to the quiet member: by the odds, no session survives
   * that, and the try proves nothing.
   */
  async function once(): Promise<boolean> {
    const prefix = `spare-${randomUUID()}/`;
    const client = cluster.client({ hosts: proxies.map((p) => `http://127.0.0.1:${p.port}`), faultHandling });
    const locks = new Locksmith(etcdBackend({ client, prefix, leaseTtl: 2_000, commandTimeout: 500 }), { ttl: 2_000, wait: 0 });
    locks.on('error', () => undefined);
    try {
      const before = await streams();
      const first = await take(locks);
      const lease = await leaseOf(first, prefix);
      await first.release();
      // The session opens its stream at its first tick, a third of the TTL after the grant.
      let quiet = -1;
      await until(async () => (quiet = (await streams()).findIndex((n, i) => n > before[i]!)) >= 0, 5_000, 20);
      const member = cluster.members[quiet]!;
      const heard = await member.grpcCount('grpc_server_msg_received_total', 'LeaseKeepAlive');
      const quietAt = performance.now();
      let next: Lock;
      proxies[quiet]!.blackhole('answers');
      try {
        await until(async () => total(await streams()) > total(before) + 1, 3_000, 20).catch(() =>
          assert.fail('no spare keep-alive stream was opened'),
        );
        if ((await streams())[quiet]! > before[quiet]! + 1) return false;
        // The last answered keep-alive was sent before the quiet began: without the spare the lease
        // would be known to live no later than one TTL after it, and the session would be lost there.
        await delay(quietAt + 3_000 - performance.now());
        assert.ok((await member.grpcCount('grpc_server_msg_received_total', 'LeaseKeepAlive')) > heard, 'the quiet member got keep-alives');
        next = await take(locks);
        assert.equal(await leaseOf(next, prefix), lease, 'the session lease was lost and a new one granted');
      } finally {
        proxies[quiet]!.pass();
      }
      // Once the member answers again: its release may go there.
      await next.release();
      return true;
    } finally {
      await locks.close();
    }
  }

  test('a member that takes keep-alives and never answers does not cost the session: a spare stream keeps it', async (t) => {
    let tries = 1;
    while (!(await once())) {
      assert.ok(++tries <= TRIES, `in ${TRIES} tries the spare stream never went to another member than the quiet one`);
    }
    t.diagnostic(`tries: ${tries}`);
  });
});
