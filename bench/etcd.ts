// etcd backend vs the raw floor and etcd3's own lock, on a 3-member cluster started here, in one run.
//   A: sequential acquire+release on one key (1500 in all, in 15 rounds; see rounds() in stats.ts)
//   B: 64 concurrent workers, each on its own key (6400 in all, in 15 rounds)
//   C: 16 workers on one key, each holding it 1 ms: throughput and the release → next-acquire gap,
//      beside what one watch notification (a delete's commit until its watch event) and one round
//      trip (a linearizable read) take in the same run: a handoff can take no less than both.
// Run: npm run bench:etcd (builds first; the library is the built package, as users run it)

import { randomUUID } from 'node:crypto';
import { EtcdLockFailedError, type Etcd3 } from 'etcd3';
import { Locksmith } from 'fencelock';
import { etcdBackend } from 'fencelock/etcd';
import { EtcdCluster } from '../test/support/etcd.js';
import { abcRow, alternating, handoff, summarize, table, type Take } from './stats.js';

const ROUNDS = 15;
const A_OPS = Math.round(Number(process.env.BENCH_A ?? 1_500) / ROUNDS);
const B_OPS = Math.round(Number(process.env.BENCH_B ?? 6_400) / ROUNDS / 64) * 64;
const C_OPS = Number(process.env.BENCH_C ?? 500);
const TTL = 10_000;

function caseC(take: Take): Promise<{ ops: number; p50: number; p99: number }> {
  const key = `bench:c:${randomUUID()}`;
  return handoff(
    16,
    C_OPS,
    () => take(key),
    () => new Promise((r) => setTimeout(r, 1)),
  );
}

/** Polls like the peers do (they have no wait of their own): 1 ms doubling to 10 ms. */
async function retrying<T>(attempt: () => Promise<T | undefined>): Promise<T> {
  for (let delay = 1; ; delay = Math.min(delay * 2, 10)) {
    const got = await attempt();
    if (got !== undefined) return got;
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** One watch notification and one round trip, medians of `n` each. */
async function floorLatencies(client: Etcd3, n = 200): Promise<{ notify: number; rtt: number }> {
  const key = `bench:w:${randomUUID()}`;
  const watcher = await client.watch().key(key).create();
  const notify: number[] = [];
  const rtt: number[] = [];
  for (let i = 0; i < n; i++) {
    await client.put(key).value('x');
    const heard = new Promise<void>((resolve) => watcher.once('delete', () => resolve()));
    const t0 = performance.now();
    void client.delete().key(key).exec();
    await heard;
    notify.push(performance.now() - t0);
    const t1 = performance.now();
    await client.get(key);
    rtt.push(performance.now() - t1);
  }
  await watcher.cancel();
  return { notify: summarize(notify).p50, rtt: summarize(rtt).p50 };
}

export async function benchEtcd(): Promise<Record<string, string | number>[]> {
  const cluster = await EtcdCluster.start();
  try {
    const raw = cluster.client();
    const rawLease = raw.lease(TTL / 1000);
    const leaseId = await rawLease.grant();
    // The floor: one transaction that creates the key if absent (on a lease), one delete.
    const rawTake: Take = (key) =>
      retrying(async () => {
        const r = await raw.if(key, 'Create', '==', 0).then(raw.put(key).value('').lease(leaseId)).commit();
        return r.succeeded ? () => raw.delete().key(key).exec() : undefined;
      });
    const peer = cluster.client();
    const peerTake: Take = (key) =>
      retrying(async () => {
        const lock = peer.lock(key).ttl(TTL / 1000);
        try {
          await lock.acquire();
          return () => lock.release();
        } catch (error) {
          if (error instanceof EtcdLockFailedError) return undefined;
          throw error;
        }
      });
    const locks = new Locksmith(etcdBackend({ client: cluster.client() }), { ttl: TTL, wait: 60_000 });
    const ours: Take = async (key) => {
      const lock = await locks.acquire(key);
      return () => lock.release();
    };
    const contenders: [string, Take][] = [
      ['raw floor: txn create-if-absent + delete', rawTake],
      ['locksmith', ours],
      ['etcd3 client.lock() (lease + txn + revoke)', peerTake],
    ];
    const t0 = performance.now();
    const ab = await alternating(
      contenders.map((c) => c[1]),
      { ops: A_OPS },
      { ops: B_OPS, workers: 64 },
      ROUNDS,
    );
    const rows: Record<string, string | number>[] = [];
    for (const [i, [name, take]] of contenders.entries()) {
      console.error(`  ${name}… (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      const c = await caseC(take);
      rows.push(abcRow(name, i, ab, 64, c));
    }
    const floor = await floorLatencies(raw);
    rows.push({
      contender: `one watch notification + one round trip: ${floor.notify.toFixed(2)} + ${floor.rtt.toFixed(2)} ms`,
      'C gap p50 ms': floor.notify + floor.rtt,
    });
    await locks.close();
    await rawLease.revoke();
    return rows;
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchEtcd()));
}
