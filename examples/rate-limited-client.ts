// A rate-limited API client: a partner API takes at most 30 requests in any second from all of our
// processes together, and answers 429 beyond that. Every client takes a token from one rate limiter
// kept in Redis before each call (20 a second, bursts of 5: at most 25 in any second, a little under
// the API's limit, since the time between a token and the request's arrival varies), so two processes
// (two Locksmith instances on their own connections here) share the budget. A call that gets a 429
// anyway (a starved machine can bunch requests) is sent again with its next token. A bulk call that
// cannot wait is refused at once with the time to retry, instead of being sent and rejected.
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/rate-limited-client.ts
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { Locksmith } from 'fencelock';
import { redisBackend } from 'fencelock/redis';

const API_LIMIT = 30; // requests in any second, all clients together
const RATE = { limit: 20, interval: 1_000, burst: 5 }; // ours: at most 5 + 20 = 25 in any second

// The partner API.
const seen: number[] = [];
let refused = 0;
const api = createServer((_req, res) => {
  const now = performance.now();
  seen.push(now);
  const lastSecond = seen.filter((t) => t > now - 1_000).length;
  if (lastSecond > API_LIMIT) {
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
      for (let attempt = 1; ; attempt++) {
        const token = await budget.take({ wait: 5_000 });
        if (!token.allowed) throw new Error(`no token for ${path} within 5 s`);
        const { status } = await fetch(`${base}${path}`);
        if (status !== 429 || attempt === 10) return status;
      }
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
console.log(
  `40 calls from 2 clients in ${seconds.toFixed(2)} s: ${statuses.filter((s) => s === 200).length} ok, ${refused} × 429 on the way`,
);
if (statuses.some((s) => s !== 200)) throw new Error(`calls failed: ${statuses.join(' ')}`);
// 5 at once, then 35 at 20/s: 1.75 s at least, however busy the machine.
if (seconds < 1.7) throw new Error('faster than 20/s: the two clients did not share the budget');

console.log('bulk call right after:', await a.bulk(RATE.burst)); // the bucket is empty: refused with a retry time

api.close();
for (const locks of processes) await locks.close();
for (const client of connections) client.disconnect();
