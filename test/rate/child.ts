// One of several processes sharing a rate limiter: `child.ts KIND TARGET NAME RATE BURST MS LOOPS`
// runs LOOPS concurrent take loops for MS ms (a refused take sleeps the retryAfter it was given), and
// prints every allowed take as [sent, answered] epoch ms, as JSON: the grant happened in between. KIND is redis (TARGET a port), cluster (TARGET ports, comma-separated)
// postgres (TARGET a JSON pg config) or file (TARGET the lock directory).
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import type { LockBackend } from '../../src/backend.js';
import { fileBackend } from '../../src/backends/file/index.js';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { Locksmith } from '../../src/index.js';

const [kind, target, name, rate, burst, ms, loops] = process.argv.slice(2) as [string, string, string, string, string, string, string];
let backend: LockBackend;
let close: () => Promise<void>;
if (kind === 'file') {
  backend = fileBackend({ dir: target });
  close = () => Promise.resolve();
} else if (kind === 'postgres') {
  const pool = new pg.Pool({ ...(JSON.parse(target) as pg.PoolConfig), max: 4 });
  backend = postgresBackend({ pool });
  close = () => pool.end();
} else {
  const client =
    kind === 'cluster'
      ? new Cluster(target.split(',').map((port) => ({ host: '127.0.0.1', port: Number(port) })))
      : new Redis(Number(target), '127.0.0.1');
  backend = redisBackend({ client });
  close = async () => void client.disconnect();
}
const locks = new Locksmith(backend);
const limiter = locks.rateLimiter(name, { limit: Number(rate), interval: 1_000, burst: Number(burst) });
const stop = Date.now() + Number(ms);
const allowed: [number, number][] = [];
await Promise.all(
  Array.from({ length: Number(loops) }, async () => {
    while (Date.now() < stop) {
      const sent = Date.now();
      const d = await limiter.take();
      if (d.allowed) allowed.push([sent, Date.now()]);
      else await new Promise((resolve) => setTimeout(resolve, d.retryAfter));
    }
  }),
);
process.stdout.write(JSON.stringify(allowed));
await locks.close();
await close();
