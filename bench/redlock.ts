// Redlock over 5 local redis-server nodes: sequential acquire+release, against the peers and a raw
// 5-node floor (SET NX PX to all in parallel, done at a majority; owner-checked DEL to all).
// Run: npm run bench:redlock (builds first; the library is the built package)

import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock';
import { Locksmith } from 'locksmith';
import { redlockBackend } from 'locksmith/redlock';
import { RedisNode } from '../test/support/redis.js';
import { rounds, table } from './stats.js';

const ROUNDS = 15;
const OPS = Number(process.env.BENCH_N ?? 1_500);
const TTL = 10_000;
const RAW_DEL = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
/** The cheapest fenced grant per node: the counter's INCR and the SET NX PX in one script. */
const FENCED_SET = `local f = redis.call('INCR', KEYS[2]) if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return f end return 0`;

type Once = () => Promise<void>;

/** Resolves when `n` of the promises have fulfilled with a truthy value (or all settled). */
function majority(promises: Promise<unknown>[], n: number): Promise<boolean> {
  return new Promise((resolve) => {
    let yes = 0;
    let settled = 0;
    for (const p of promises) {
      p.then(
        (v) => {
          if (v) yes += 1;
          settled += 1;
          if (yes === n) resolve(true);
          else if (settled === promises.length) resolve(yes >= n);
        },
        () => {
          settled += 1;
          if (settled === promises.length) resolve(yes >= n);
        },
      );
    }
  });
}

export async function benchRedlock(): Promise<Record<string, string | number>[]> {
  const nodes = await Promise.all([0, 1, 2, 3, 4].map(() => RedisNode.start()));
  const all: Redis[] = [];
  const clients = (): Redis[] => {
    const set = nodes.map((n) => new Redis(n.port, '127.0.0.1'));
    all.push(...set);
    return set;
  };
  try {
    const raw = clients();
    const shas = await Promise.all(raw.map((c) => c.script('LOAD', RAW_DEL) as Promise<string>));
    const rawOnce: Once = async () => {
      const token = randomUUID();
      if (!(await majority(raw.map((c) => c.set('bench:rl', token, 'PX', TTL, 'NX')), 3))) throw new Error('raw: no quorum');
      await majority(raw.map((c, i) => c.evalsha(shas[i]!, 1, 'bench:rl', token)), 3);
    };
    // The fenced floor: each node's fence taken in the grant's script, done at a majority (the
    // token, the majority's highest, needs no write-back while the counters move in step).
    const fencedShas = await Promise.all(raw.map((c) => c.script('LOAD', FENCED_SET) as Promise<string>));
    const fencedOnce: Once = async () => {
      const token = randomUUID();
      if (!(await majority(raw.map((c, i) => c.evalsha(fencedShas[i]!, 2, '{bench:rl}:lease', '{bench:rl}:fence', token, TTL)), 3))) throw new Error('fenced: no quorum');
      await majority(raw.map((c, i) => c.evalsha(shas[i]!, 1, '{bench:rl}:lease', token)), 3);
    };
    const locks = new Locksmith(redlockBackend({ clients: clients() }), { ttl: TTL, wait: 10_000 });
    const oursOnce: Once = async () => {
      const lock = await locks.acquire('bench:rl');
      await lock.release();
    };
    const redlock = new Redlock(clients(), { retryCount: 10, retryDelay: 2 });
    redlock.on('clientError', () => undefined);
    const redlockOnce: Once = async () => {
      const lock = await redlock.lock('bench:rl', TTL);
      await lock.unlock();
    };
    const sesame = new SesameRedlock(clients(), { retryCount: 10, retryDelay: 2 });
    sesame.on('error', () => undefined);
    const sesameOnce: Once = async () => {
      const lock = await sesame.acquire(['bench:rl'], TTL);
      await lock.release();
    };
    const contenders: [string, Once][] = [
      ['raw 5-node floor', rawOnce],
      ['fenced 5-node floor', fencedOnce],
      ['locksmith redlock', oursOnce],
      ['redlock 4', redlockOnce],
      ['@sesamecare-oss/redlock', sesameOnce],
    ];
    const per = OPS / ROUNDS;
    const { ops, ratio } = await rounds(
      contenders.map(([, once]) => async () => {
        const t0 = performance.now();
        for (let j = 0; j < per; j++) await once();
        return per / ((performance.now() - t0) / 1000);
      }),
      ROUNDS,
      async () => {
        for (const [, once] of contenders) for (let i = 0; i < 100; i++) await once();
      },
    );
    await locks.close();
    return contenders.map(([name], i) => ({ contender: name, 'acquire+release ops/s': ops[i]!, 'vs raw': ratio[i]! }));
  } finally {
    for (const c of all) c.disconnect();
    await Promise.all(nodes.map((n) => n.stop()));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchRedlock()));
}
