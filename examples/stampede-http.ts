// A cache-stampede guard in an HTTP handler, shared through Redis: 50 concurrent requests for a cold
// key cost one call to the slow upstream; later requests are served from the cache, and a stale value
// is served at once while one request refreshes it.
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/stampede-http.ts
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Locksmith } from 'fencelock';
import { redisBackend, redisCacheStore } from 'fencelock/redis';

const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const locks = new Locksmith(redisBackend({ client }));
const guard = locks.stampede({
  freshFor: 1_000,
  staleFor: 60_000,
  store: redisCacheStore({ client, prefix: `example:cache:${process.pid}:` }),
});

let upstreamCalls = 0;
async function slowUpstream(id: string): Promise<{ id: string; price: number }> {
  upstreamCalls += 1;
  await new Promise((r) => setTimeout(r, 200));
  return { id, price: 42 };
}

const server = createServer((req, res) => {
  const id = new URL(req.url ?? '/', 'http://x').searchParams.get('id') ?? 'none';
  guard
    .get(`product:${id}`, () => slowUpstream(id), { returnStale: true })
    .then(
      (product) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(product)),
      (error: unknown) => res.writeHead(503).end(String(error)),
    );
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const burst = await Promise.all(Array.from({ length: 50 }, () => fetch(`${base}/?id=7`).then((r) => r.json())));
console.log(`50 concurrent requests, ${upstreamCalls} upstream call(s); first answer`, burst[0]);
if (upstreamCalls !== 1) throw new Error(`expected one upstream call, got ${upstreamCalls}`);

await new Promise((r) => setTimeout(r, 1_100)); // the value is stale now
const started = performance.now();
await fetch(`${base}/?id=7`).then((r) => r.json());
console.log(`a stale value served in ${(performance.now() - started).toFixed(0)} ms while it refreshes`);

server.close();
await new Promise((r) => setTimeout(r, 300)); // let the background refresh finish
await locks.close();
client.disconnect();
