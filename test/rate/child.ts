// One of several processes sharing a rate limiter: `child.ts KIND TARGET NAME RATE BURST MS LOOPS`
// runs LOOPS concurrent take loops for MS ms (a refused take sleeps the retryAfter it was given), and
// prints every allowed take as [sent, answered] epoch ms, as JSON: the grant happened in between. KIND is redis (TARGET a port), cluster (TARGET ports, comma-separated)
// postgres (TARGET a JSON pg config), file (TARGET the lock directory) or etcd (TARGET host:port list).
import { childBackend } from '../support/child-backend.js';
import { Locksmith } from '../../src/index.js';

const [kind, target, name, rate, burst, ms, loops] = process.argv.slice(2) as [string, string, string, string, string, string, string];
const { backend, close } = childBackend(kind, target);
const locks = new Locksmith(backend);
const limiter = locks.rateLimiter(name, { limit: Number(rate), interval: 1_000, burst: Number(burst) });
const stop = Date.now() + Number(ms);
const allowed: [number, number][] = [];
await Promise.all(
  Array.from({ length: Number(loops) }, async () => {
    while (Date.now() < stop) {
      const sent = Date.now();
      const d = await limiter.take();
      // Date.now() truncates to the ms: the send's reading is never late, but the answer's may be
      // up to 1 ms early, which would narrow the window and make a correct limiter look wrong.
      if (d.allowed) allowed.push([sent, Date.now() + 1]);
      else await new Promise((resolve) => setTimeout(resolve, d.retryAfter));
    }
  }),
);
process.stdout.write(JSON.stringify(allowed));
await locks.close();
await close();
