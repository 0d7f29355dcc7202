// Redis backend vs the raw commands and peer libraries, on one redis-server started here, in one run.
//   A: sequential acquire+release on one key (3000 in all, in 15 rounds; see rounds() in stats.ts)
//   B: 64 concurrent workers, each on its own key (19200 in all, in 15 rounds)
//   C: 16 workers on one key, each holding it 1 ms: throughput and the release → next-acquire gap
// Run: npm run bench:redis (builds first; the library is the built package, as users run it)

import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock';
import { Mutex } from 'redis-semaphore';
import { Locksmith } from 'locksmith';
import { redisBackend } from 'locksmith/redis';
import { RedisNode } from '../test/support/redis.js';
import { abcRow, alternating, handoff, table, type Take } from './stats.js';

const ROUNDS = 15;
const A_OPS = Math.round(Number(process.env.BENCH_A ?? 3_000) / ROUNDS); // per round
const B_OPS = Math.round(Number(process.env.BENCH_B ?? 19_200) / ROUNDS / 64) * 64; // per round
const C_OPS = Number(process.env.BENCH_C ?? 1_000);
const TTL = 10_000;

const RAW_DEL = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
/** The cheapest fenced grant: the counter's INCR and the SET NX PX in one script (as the issue asks). */
const FENCED_SET = `local f = redis.call('INCR', KEYS[2]) if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return f end return 0`;

/** C: 16 workers on one fresh key, each holding it 1 ms. */
function caseC(take: Take): Promise<{ ops: number; p50: number; p99: number }> {
  const key = `bench:c:${randomUUID()}`;
  return handoff(16, C_OPS, () => take(key), () => new Promise((r) => setTimeout(r, 1)));
}

export async function benchRedis(): Promise<Record<string, string | number>[]> {
  const node = await RedisNode.start();
  const clients: Redis[] = [];
  const client = (): Redis => {
    const c = new Redis(node.port, '127.0.0.1');
    clients.push(c);
    return c;
  };
  try {
    const raw = client();
    const rawDelSha = (await raw.script('LOAD', RAW_DEL)) as string;
    const rawTake: Take = async (key) => {
      const token = randomUUID();
      for (let delay = 1; ; delay = Math.min(delay * 2, 10)) {
        if ((await raw.set(key, token, 'PX', TTL, 'NX')) === 'OK') return () => raw.evalsha(rawDelSha, 1, key, token);
        await new Promise((r) => setTimeout(r, delay));
      }
    };
    // The fenced floor: what any lock that fences in the grant's own script must at least send.
    const fencedSha = (await raw.script('LOAD', FENCED_SET)) as string;
    const fencedTake: Take = async (key) => {
      const token = randomUUID();
      const lease = `{${key}}:lease`;
      for (let delay = 1; ; delay = Math.min(delay * 2, 10)) {
        if ((await raw.evalsha(fencedSha, 2, lease, `{${key}}:fence`, token, TTL)) !== 0) return () => raw.evalsha(rawDelSha, 1, lease, token);
        await new Promise((r) => setTimeout(r, delay));
      }
    };
    const locks = new Locksmith(redisBackend({ client: client() }), { ttl: TTL, wait: 60_000 });
    const ours: Take = async (key) => {
      const lock = await locks.acquire(key);
      return () => lock.release();
    };
    // Peers configured to wait as tightly as they allow (they poll).
    const redlock = new Redlock([client()], { retryCount: -1, retryDelay: 2, retryJitter: 1 });
    redlock.on('clientError', () => undefined);
    const redlockTake: Take = async (key) => {
      const lock = await redlock.lock(key, TTL);
      return () => lock.unlock();
    };
    const sesame = new SesameRedlock([client()], { retryCount: -1, retryDelay: 2, retryJitter: 1 });
    sesame.on('error', () => undefined);
    const sesameTake: Take = async (key) => {
      const lock = await sesame.acquire([key], TTL);
      return () => lock.release();
    };
    const semClient = client();
    const semaphoreTake: Take = async (key) => {
      const mutex = new Mutex(semClient, key, { lockTimeout: TTL, acquireTimeout: 60_000, retryInterval: 2 });
      await mutex.acquire();
      return () => mutex.release();
    };

    const contenders: [string, Take][] = [
      ['raw SET NX PX + Lua DEL', rawTake],
      ['fenced floor: INCR + SET NX PX script', fencedTake],
      ['locksmith', ours],
      ['redlock 4', redlockTake],
      ['@sesamecare-oss/redlock', sesameTake],
      ['redis-semaphore Mutex', semaphoreTake],
    ];
    // C (long, latency-bound) runs once each, after A and B.
    const ab = await alternating(contenders.map((c) => c[1]), { ops: A_OPS }, { ops: B_OPS, workers: 64 }, ROUNDS);
    const rows: Record<string, string | number>[] = [];
    for (const [i, [name, take]] of contenders.entries()) {
      console.error(`  ${name}…`);
      const c = await caseC(take);
      rows.push(abcRow(name, i, ab, 64, c));
    }
    await locks.close();
    return rows;
  } finally {
    for (const c of clients) c.disconnect();
    await node.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchRedis()));
}
