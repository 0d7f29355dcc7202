// Rate limiter on Redis vs rate-limiter-flexible (RateLimiterRedis) and the raw GCRA script, on one
// redis-server started here, in one run, every library on the same ioredis connection:
//   S: sequential takes (one at a time, contenders taking turns take by take: see interleaved()), takes/s
//   P: 64 concurrent workers, takes/s
// Every take is allowed (a limit far above the rate reached), so all contenders do the same work:
// one round trip that reads and moves a counter. Ratios are to the raw script, taken within rounds.
// Run: npm run bench:rate (builds first; the library is the built package, as users run it)

import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { Locksmith } from 'fencelock';
import { redisBackend } from 'fencelock/redis';
import { RATE_TAKE } from '../src/backends/redis/rate.js';
import { RedisNode } from '../test/support/redis.js';
import { interleaved, rounds, table } from './stats.js';

const ROUNDS = 15;
const S_OPS = Math.round(Number(process.env.BENCH_S ?? 6_000) / ROUNDS);
const P_OPS = Math.round(Number(process.env.BENCH_P ?? 38_400) / ROUNDS / 64) * 64;
const LIMIT = 1_000_000_000;

type Take = () => Promise<unknown>;

async function par(take: Take, ops: number, workers = 64): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let i = 0; i < ops / workers; i++) await take();
    }),
  );
  return ops / ((performance.now() - t0) / 1000);
}

export async function benchRate(): Promise<Record<string, string | number>[]> {
  const node = await RedisNode.start();
  const client = new Redis(node.port, '127.0.0.1');
  try {
    const sha = (await client.script('LOAD', RATE_TAKE)) as string;
    const t = 1_000 / LIMIT;
    const raw: Take = () => client.evalsha(sha, 1, 'bench:raw:{r}:rate', t, t * LIMIT);
    const locks = new Locksmith(redisBackend({ client }));
    const limiter = locks.rateLimiter('bench:ours', { limit: LIMIT, interval: 1_000 });
    const ours: Take = () => limiter.take();
    const rlf = new RateLimiterRedis({ storeClient: client, points: LIMIT, duration: 1, keyPrefix: 'bench:rlf' });
    const theirs: Take = () => rlf.consume('k');
    const contenders: [string, Take][] = [
      ['raw GCRA script (floor)', raw],
      ['locksmith rateLimiter', ours],
      ['rate-limiter-flexible 11', theirs],
    ];
    const warm = async (): Promise<void> => {
      for (const [, take] of contenders) for (let i = 0; i < 500; i++) await take();
    };
    await warm();
    const S = await interleaved(
      contenders.map(([, take]) => take),
      ROUNDS,
      S_OPS,
    );
    const P = await rounds(
      contenders.map(
        ([, take]) =>
          () =>
            par(take, P_OPS),
      ),
      ROUNDS,
    );
    await locks.close();
    const rlfIndex = contenders.length - 1;
    return contenders.map(([name], i) => ({
      contender: name,
      'S takes/s': Math.round(S.ops[i]!),
      'S vs raw': Number(S.ratio[i]!.toFixed(2)),
      'S vs rlf': Number(S.ratioTo(rlfIndex)[i]!.toFixed(2)),
      'P 64 takes/s': Math.round(P.ops[i]!),
      'P vs raw': Number(P.ratio[i]!.toFixed(2)),
      'P vs rlf': Number(P.ratioTo(rlfIndex)[i]!.toFixed(2)),
    }));
  } finally {
    client.disconnect();
    await node.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchRate()));
}
