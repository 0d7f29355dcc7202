// A separate process for the PostgreSQL backend's tests: `hold CONFIG KEY TTL` acquires KEY (config
// is a JSON pg.ClientConfig), prints "held <fence>", then waits to be killed or stopped; if it is
// stopped past its ttl and resumed, it prints "lost" when it learns the lease is gone.
import pg from 'pg';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { Locksmith } from '../../src/index.js';

const [mode, config, key, ttl] = process.argv.slice(2);
const pool = new pg.Pool({ ...(JSON.parse(config!) as pg.PoolConfig), max: 2 });
pool.on('error', () => undefined);
const locks = new Locksmith(postgresBackend({ pool }), { ttl: Number(ttl ?? 30_000) });
if (mode === 'hold') {
  const lock = await locks.acquire(key!);
  lock.signal.addEventListener('abort', () => console.log('lost'));
  console.log(`held ${lock.fence}`);
  setInterval(() => {}, 1_000);
}
