// One process of the multi-process stampede test: 25 concurrent gets of one cold key through Redis.
import { Redis } from 'ioredis';
import { redisBackend, redisCacheStore } from '../../src/backends/redis/index.js';
import { Locksmith } from '../../src/index.js';

const [port, key] = process.argv.slice(2) as [string, string];
const client = new Redis(Number(port), '127.0.0.1');
const locks = new Locksmith(redisBackend({ client }), { wait: 30_000 });
const guard = locks.stampede({ freshFor: 60_000, store: redisCacheStore({ client }) });
const values = await Promise.all(
  Array.from({ length: 25 }, () =>
    guard.get(key, async () => {
      await client.incr(`fetches:${key}`); // counted in Redis: the fetcher may run in any process
      await new Promise((r) => setTimeout(r, 100));
      return { by: process.pid, at: Date.now() };
    }),
  ),
);
console.log(JSON.stringify(values));
await locks.close();
client.disconnect();
