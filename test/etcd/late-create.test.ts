// A create the backend gave up on may still commit: a member that took it and was then stopped
// (SIGSTOP) runs it when it resumes, after the attempt timed out and its cleanup went through on
// another member. The safety suite's node-pause stalled on exactly that: the late key was first in
// line, on a session that stayed alive, with nothing left here to delete it. These tests hold the
// request back in the client instead of in a stopped member, so the order is certain; the cluster
// that runs it is real.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import type { KVClient } from '../../src/backends/etcd/client.js';
import { LockAcquisitionError, Locksmith } from '../../src/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { until } from '../support/until.js';

type TxnRequest = Parameters<KVClient['txn']>[0];

const creates = (request: TxnRequest): boolean => request.success.some((op) => op.request_put);
const deletes = (request: TxnRequest): boolean => request.success.some((op) => op.request_delete_range);

describe('etcd backend: a create that lands late', () => {
  let cluster: EtcdCluster;
  const closers: (() => unknown)[] = [];
  before(async () => {
    cluster = await EtcdCluster.start();
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await cluster.stop();
  });

  /** A backend over a real client whose KV calls `hold` may keep back (rejecting as a deadline would). */
  function backendWith(hold: (request: TxnRequest) => 'send' | 'keep' | 'drop-answer'): {
    locks: Locksmith;
    raw: Etcd3;
    cleaned: () => number;
  } {
    const raw = cluster.client();
    let cleaned = 0;
    const kv: KVClient = {
      txn: async (request, options) => {
        const verdict = hold(request);
        if (verdict === 'keep') throw new Error('4 DEADLINE_EXCEEDED: kept back by the test');
        const answer = await raw.kv.txn(request, options);
        if (deletes(request)) cleaned += 1;
        if (verdict === 'drop-answer') throw new Error('4 DEADLINE_EXCEEDED: answer dropped by the test');
        return answer;
      },
      range: (request, options) => raw.kv.range(request, options),
    };
    const client = { prefix: raw.prefix, kv, leaseClient: raw.leaseClient, watch: () => raw.watch() };
    const locks = new Locksmith(etcdBackend({ client, leaseTtl: 5_000, commandTimeout: 1_000 }), { ttl: 500, wait: 0 });
    locks.on('error', () => undefined);
    closers.push(
      () => locks.close().catch(() => undefined),
      () => raw.close(),
    );
    return { locks, raw, cleaned: () => cleaned };
  }

  function others(): Locksmith {
    const client = cluster.client();
    const locks = new Locksmith(etcdBackend({ client, leaseTtl: 5_000, commandTimeout: 1_000 }), { ttl: 2_000, wait: 0 });
    closers.push(
      () => locks.close().catch(() => undefined),
      () => client.close(),
    );
    return locks;
  }

  test('a create that commits after its attempt failed and its cleanup went through leaves no key in line', async () => {
    let kept: TxnRequest | undefined;
    const { locks, raw, cleaned } = backendWith((request) => {
      if (kept || !creates(request) || deletes(request)) return 'send';
      kept = request;
      return 'keep';
    });
    const key = `etcd:${randomUUID()}`;
    await assert.rejects(locks.acquire(key), LockAcquisitionError);
    assert.ok(kept, 'the create was kept back');
    // The attempt's cleanup (at its ttl) goes through while the create is still on its way.
    await until(() => cleaned() > 0);
    // The stopped member resumes: the create it took runs now, on the session that is still alive.
    await raw.kv.txn(kept);
    const lock = await others().tryAcquire(key);
    assert.ok(lock, 'a key of the late create holds the line');
    await lock.release();
    // The backend that cleaned up still creates keys (it knows where its guard is).
    const mine = await locks.tryAcquire(key);
    assert.ok(mine, 'the backend that cleaned up could not take a free lock');
    await mine.release();
  });

  test('a cleanup whose answer was lost does not cost the next try: it learns where the guard is and goes again', async () => {
    let kept = false;
    let dropped = false;
    const { locks, cleaned } = backendWith((request) => {
      if (!kept && creates(request) && !deletes(request)) {
        kept = true;
        return 'keep';
      }
      if (!(creates(request) && deletes(request))) return 'send';
      // The first cleanup (a delete that moves the guard) goes through unanswered, and its retries do
      // not get out: the guard has moved once, and this backend does not know where to.
      if (dropped) return 'keep';
      dropped = true;
      return 'drop-answer';
    });
    await assert.rejects(locks.acquire(`etcd:${randomUUID()}`), LockAcquisitionError);
    await until(() => cleaned() === 1);
    const lock = await locks.tryAcquire(`etcd:${randomUUID()}`);
    assert.ok(lock, 'a one-off try on a free lock was refused');
    await lock.release();
  });
});
