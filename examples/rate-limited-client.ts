// A rate-limited API client: a partner API allows 20 requests a second (bursts of 5) from all of our
// processes together, and answers 429 beyond that. Every client takes a token from one rate limiter
// kept in Redis before each call, so two processes (two Locksmith instances on their own connections
// here) share the budget and the API never says 429. A bulk call that cannot wait is refused at once
// with the time to retry, instead of being sent and rejected.
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/rate-limited-client.ts
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Locksmith } from 'fencelock';
import { redisBackend } from 'fencelock/redis';

const RATE = { limit: 20, interval: 1_000, burst: 5 };

// The partner API: at most burst + limit requests in any second, the most GCRA ever lets through.
const seen: number[] = [];
let refused = 0;
const api = createServer((_req, res) => {
  const now = performance.now();
  seen.push(now);
  const lastSecond = seen.filter((t) => t > now - 1_000).length;
  if (lastSecond > RATE.burst + RATE.limit) {
    refused += 1;
    res.writeHead(429).end();
  } else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
});
await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;

/** One process's client: every call waits (up to 5 s) for a token of the shared budget first. */
function partnerClient(locks: Locksmith) {
  const budget = locks.rateLimiter(`partner-api:${process.pid}`, RATE);
  return {
    async get(path: string): Promise<number> {
      const token = await budget.take({ wait: 5_000 });
      if (!token.allowed) throw new Error(`no token for ${path} within 5 s`);
      return (await fetch(`${base}${path}`)).status;
    },
    /** Costs `cost` tokens; never waits: the caller decides what to do with retryAfter. */
    async bulk(cost: number): Promise<string> {
      const token = await budget.take({ cost });
      return token.allowed ? `sent (${token.remaining} tokens left)` : `refused, retry in ${token.retryAfter} ms`;
    },
  };
}

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const connections = [new Redis(url), new Redis(url)];
const processes = connections.map((client) => new Locksmith(redisBackend({ client })));
const [a, b] = processes.map(partnerClient) as [ReturnType<typeof partnerClient>, ReturnType<typeof partnerClient>];

const started = performance.now();
const statuses = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).get(`/orders/${i}`)));
const seconds = (performance.now() - started) / 1_000;
console.log(`40 calls from 2 clients in ${seconds.toFixed(2)} s: ${statuses.filter((s) => s === 200).length} ok, ${refused} × 429`);
if (refused > 0) throw new Error('the API refused calls: the limiter let too many through');
if (seconds < 1.5) throw new Error('faster than 20/s: the two clients did not share the budget');

console.log('bulk call right after:', await a.bulk(RATE.burst)); // the bucket is empty: refused with a retry time

api.close();
for (const locks of processes) await locks.close();
for (const client of connections) client.disconnect();
