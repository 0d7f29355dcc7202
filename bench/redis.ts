// Redis backend vs the raw commands and peer libraries, on one redis-server started here, in one run.
//   A: sequential acquire+release, each on a new key (31000 in all, in 31 rounds; see rounds() in
//      stats.ts), with the client's CPU per pair
//   B: 64 concurrent workers, each on its own key (19200 in all, in 15 rounds)
//   C: 16 workers on one key, each holding it 1 ms: throughput and the release → next-acquire gap
//   and the server's CPU per pair (INFO cpu) for the raw floor and for us.
// BENCH_CLIENT picks the client every contender shares: ioredis6 (default: RESP3, its defaults),
// ioredis5, or node-redis (5; the peers need ioredis, so only the raw floor and us run).
// Run: npm run bench:redis (builds first; the library is the built package, as users run it)

import { randomUUID } from 'node:crypto';
import { Redis as Redis5 } from 'ioredis';
import { Redis as Redis6 } from 'ioredis-v6';
import { createClient } from 'redis-v5';
import Redlock from 'redlock';
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock';
import { Mutex } from 'redis-semaphore';
import { Locksmith } from 'fencelock';
import { redisBackend } from 'fencelock/redis';
import { RedisNode } from '../test/support/redis.js';
import { oneCpu } from './pin.js';
import { distinctKeys, handoff, median, rounds, table, type Take } from './stats.js';

const ROUNDS = 15;
// A in 31 rounds: with 15, one build's A measured 0.81-0.97 (ioredis 6) and 0.86-1.03 (ioredis 5) in
// four runs of one afternoon, its client CPU 0.93-1.24x raw. A round's VM spell moves one
// contender's round, and a median of 31 moves about 1/sqrt(2) as far as one of 15 (Redlock's D, too).
const A_ROUNDS = 31;
// Per round: 1000 pairs. Rounds of 200 measured ours 0.50-0.66x on one CPU where rounds of 2000
// measured 0.79x: the six libraries' garbage and compilations land on whoever runs next.
const A_OPS = Math.round(Number(process.env.BENCH_A ?? 31_000) / A_ROUNDS);
const B_OPS = Math.round(Number(process.env.BENCH_B ?? 19_200) / ROUNDS / 64) * 64; // per round
const C_OPS = Number(process.env.BENCH_C ?? 1_000);
const TTL = 10_000;
const FLAVOR = process.env.BENCH_CLIENT ?? 'ioredis6';

const RAW_DEL = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
/** The cheapest fenced grant: a server-clock fence and the SET NX PX in one script. */
const FENCED_SET = `local t = redis.call('TIME') if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return t[1] * 1000000 + t[2] end return 0`;

/** The raw commands on one connection of the chosen client. */
interface Raw {
  client: unknown;
  setNx(key: string, token: string): Promise<boolean>;
  load(source: string): Promise<string>;
  evalsha(sha: string, keys: string[], args: (string | number)[]): Promise<unknown>;
  close(): Promise<void>;
}

async function connect(port: number): Promise<Raw> {
  if (FLAVOR === 'node-redis') {
    const c = createClient({ url: `redis://127.0.0.1:${port}` });
    await c.connect();
    return {
      client: c,
      setNx: async (key, token) => (await c.set(key, token, { PX: TTL, NX: true })) === 'OK',
      load: (source) => c.scriptLoad(source),
      evalsha: (sha, keys, args) => c.evalSha(sha, { keys, arguments: args.map(String) }),
      close: async () => void c.destroy(),
    };
  }
  const c = FLAVOR === 'ioredis5' ? new Redis5(port, '127.0.0.1') : new Redis6(port, '127.0.0.1');
  return {
    client: c,
    setNx: async (key, token) => (await c.set(key, token, 'PX', TTL, 'NX')) === 'OK',
    load: async (source) => String(await c.script('LOAD', source)),
    evalsha: (sha, keys, args) => c.evalsha(sha, keys.length, ...keys, ...args),
    close: async () => c.disconnect(),
  };
}

/** Retries a grant that may be refused every 1, 2, 4 … 10 ms, as the peers are set to. */
async function polling(grant: () => Promise<boolean>): Promise<void> {
  for (let delay = 1; !(await grant()); delay = Math.min(delay * 2, 10)) await new Promise((r) => setTimeout(r, delay));
}

/**
 * The server's CPU µs per acquire+release (INFO cpu, its user + system time) over `n` sequential
 * pairs: what it spends on them, reading and writing included. (INFO commandstats counts a script's
 * commands both on their own and inside its EVALSHA.)
 */
async function serverTime(admin: Redis5, take: Take, n = 3_000): Promise<number> {
  const cpu = async (): Promise<number> => {
    const info = await admin.info('cpu');
    return (Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1])) * 1e6;
  };
  const before = await cpu();
  for (let i = 0; i < n; i++) await (await take(`bench:s:${randomUUID()}`))();
  return ((await cpu()) - before) / n;
}

export async function benchRedis(): Promise<{ rows: Record<string, string | number>[]; pinned: boolean }> {
  const node = await RedisNode.start();
  const conns: Raw[] = [];
  const conn = async (): Promise<Raw> => {
    const c = await connect(node.port);
    conns.push(c);
    return c;
  };
  const admin = new Redis5(node.port, '127.0.0.1');
  try {
    const raw = await conn();
    const rawDel = await raw.load(RAW_DEL);
    const rawTake: Take = async (key) => {
      const token = randomUUID();
      await polling(() => raw.setNx(key, token));
      return () => raw.evalsha(rawDel, [key], [token]);
    };
    // The fenced floor: what any lock that fences in the grant's own script must at least send.
    const fenced = await raw.load(FENCED_SET);
    const fencedTake: Take = async (key) => {
      const token = randomUUID();
      const lease = `{${key}}:lease`;
      await polling(async () => (await raw.evalsha(fenced, [lease], [token, TTL])) !== 0);
      return () => raw.evalsha(rawDel, [lease], [token]);
    };
    const locks = new Locksmith(redisBackend({ client: (await conn()).client }), { ttl: TTL, wait: 60_000 });
    const ours: Take = async (key) => {
      const lock = await locks.acquire(key);
      return () => lock.release();
    };
    const contenders: [string, Take][] = [
      ['raw SET NX PX + Lua DEL', rawTake],
      ['fenced floor: TIME + SET NX PX script', fencedTake],
      ['locksmith', ours],
    ];
    if (FLAVOR !== 'node-redis') contenders.push(...(await peers(conn)));
    const cpu: number[][] = contenders.map(() => []);
    // Rounds of one contender at a time: taking turns pair by pair (interleaved()) would run six
    // libraries' code in turn, so every pair would start with cold caches, and the deepest code
    // path would pay most for it.
    // A on one CPU with the server when BENCH_PIN=1 (pin.ts): one redis-server serves every
    // contender, so unpinned, all share its placement; pinned, A compares the work each does.
    const serverPid = Number(/process_id:(\d+)/.exec(await admin.info('server'))?.[1]);
    const pinning = await oneCpu(() => Promise.resolve([serverPid]), false);
    const A = await rounds(
      contenders.map(([, take], i) => async () => {
        await pinning.pin();
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (let j = 0; j < A_OPS; j++) await (await take(`bench:a:${randomUUID()}`))();
        const ops = A_OPS / ((performance.now() - t0) / 1000);
        const used = process.cpuUsage(c0);
        cpu[i]!.push((used.user + used.system) / A_OPS);
        return ops;
      }),
      A_ROUNDS,
      async () => {
        // Long enough for the optimizing compiler to have compiled every contender's path.
        for (const [, take] of contenders) for (let j = 0; j < 2_000; j++) await (await take(`bench:w:${j}`))();
      },
    );
    await pinning.unpin();
    const B = await rounds(
      contenders.map(
        ([, take]) =>
          () =>
            distinctKeys(take, B_OPS, 64),
      ),
      ROUNDS,
    );
    const server = [await serverTime(admin, rawTake), NaN, await serverTime(admin, ours)];
    const rows: Record<string, string | number>[] = [];
    for (const [i, [name, take]] of contenders.entries()) {
      console.error(`  ${name}…`);
      const key = `bench:c:${randomUUID()}`;
      const c = await handoff(
        16,
        C_OPS,
        () => take(key),
        () => new Promise((r) => setTimeout(r, 1)),
      );
      rows.push({
        contender: name,
        'A seq ops/s': A.ops[i]!,
        'A vs raw': A.ratio[i]!,
        'A CPU µs/pair': median(cpu[i]!),
        'server CPU µs/pair': server[i] ?? NaN,
        'B 64 keys ops/s': B.ops[i]!,
        'B vs raw': B.ratio[i]!,
        'C ops/s': c.ops,
        'C gap p50 ms': c.p50,
        'C gap p99 ms': c.p99,
      });
    }
    await locks.close();
    return { rows, pinned: pinning.pinned };
  } finally {
    for (const c of conns) await c.close();
    admin.disconnect();
    await node.stop();
  }
}

/** Peers configured to wait as tightly as they allow (they poll), each on its own ioredis connection. */
async function peers(conn: () => Promise<Raw>): Promise<[string, Take][]> {
  const redlock = new Redlock([(await conn()).client], { retryCount: -1, retryDelay: 2, retryJitter: 1 });
  redlock.on('clientError', () => undefined);
  const sesame = new SesameRedlock([(await conn()).client as never], { retryCount: -1, retryDelay: 2, retryJitter: 1 });
  sesame.on('error', () => undefined);
  const semClient = (await conn()).client as never;
  return [
    [
      'redlock 4',
      async (key) => {
        const lock = await redlock.lock(key, TTL);
        return () => lock.unlock();
      },
    ],
    [
      '@sesamecare-oss/redlock',
      async (key) => {
        const lock = await sesame.acquire([key], TTL);
        return () => lock.release();
      },
    ],
    [
      'redis-semaphore Mutex',
      async (key) => {
        const mutex = new Mutex(semClient, key, { lockTimeout: TTL, acquireTimeout: 60_000, retryInterval: 2 });
        await mutex.acquire();
        return () => mutex.release();
      },
    ],
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`client: ${FLAVOR}`);
  const { rows, pinned } = await benchRedis();
  console.log(pinned ? 'A on one CPU (BENCH_PIN=1, bench/pin.ts)' : 'A unpinned');
  console.log(table(rows));
}
