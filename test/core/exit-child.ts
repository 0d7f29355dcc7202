// A program that uses every primitive once on one backend, closes it and its client, and then simply
// returns: `exit-child.ts KIND TARGET NAME` (KIND memory, file, redis, cluster, postgres or etcd, as
// child-backend.ts takes them). It never calls process.exit: the test expects the process to end on
// its own, so nothing the library made (a renewal timer, a subscriber, a waiter's wake-up, a lease
// keep-alive) may outlive close().
import { childBackend } from '../support/child-backend.js';
import { memoryBackend } from '../../src/backends/memory/index.js';
import { Locksmith } from '../../src/index.js';

const [kind, target, name] = process.argv.slice(2) as [string, string, string];
const { backend, close } = kind === 'memory' ? { backend: memoryBackend(), close: async () => undefined } : childBackend(kind, target);
const locks = new Locksmith(backend, { ttl: 3_000 });

// A held lock with its renewal timer armed, and a waiter woken by its release.
const held = await locks.acquire(name);
const waiting = locks.acquire(name, { wait: 10_000 });
await held.release();
await (await waiting).release();

const reader = await locks.read(`${name}:rw`);
await reader.release();
await (await locks.semaphore(`${name}:sem`, { limit: 2 }).acquire()).release();

if (backend.rate) {
  const limiter = locks.rateLimiter(`${name}:rate`, { limit: 1, interval: 60_000 });
  await limiter.take();
  await limiter.take({ wait: 20 }); // refused: the refill is a minute away
}

const pool = locks.pool(`${name}:pool`, { members: ['a', 'b'] });
await (await pool.acquire()).release();

const election = locks.election(`${name}:lead`, { value: 'me', ttl: 3_000 });
await election.campaign();
await election.resign();

// Left waiting when close() comes: close must end it too.
const blocker = await locks.acquire(`${name}:last`);
const stranded = locks.acquire(`${name}:last`, { wait: 60_000 }).catch(() => 'ended by close');
await locks.close();
if ((await stranded) !== 'ended by close') throw new Error('close() did not end a waiter');
void blocker;
await close();
process.stdout.write('done');
