// Two "processes" (two Locksmith instances over one in-memory store) competing for one lock, with
// fencing tokens checked by the resource. Run: npm run example
import { Locksmith, LockTimeoutError } from '../src/index.js';
import { MemoryStore, memoryBackend } from '../src/backends/memory/index.js';

const store = new MemoryStore();
const alice = new Locksmith(memoryBackend({ store }), { ttl: 2_000, wait: 5_000 });
const bob = new Locksmith(memoryBackend({ store }), { ttl: 2_000, wait: 5_000 });

// A resource that refuses writes carrying an older fence than one it has seen.
let highestFence = -1n;
let balance = 0;
async function deposit(fence: bigint, amount: number): Promise<void> {
  if (fence < highestFence) throw new Error(`stale fence ${fence} < ${highestFence}`);
  highestFence = fence;
  const read = balance;
  await new Promise((r) => setTimeout(r, 5));
  balance = read + amount;
}

await Promise.all(
  Array.from({ length: 10 }, (_, i) =>
    (i % 2 ? alice : bob).withLock('account:42', async (lock) => {
      await deposit(lock.fence, 10);
      console.log(`${i % 2 ? 'alice' : 'bob  '} deposited 10 with fence ${lock.fence}`);
    }),
  ),
);
console.log(`balance: ${balance} (expected 100)`);

const held = await alice.acquire('report', { ttl: 1_000 });
const refused = await bob.tryAcquire('report');
console.log(`bob's tryAcquire while alice holds it: ${refused === null ? 'null' : 'a lock?!'}`);
try {
  await bob.acquire('report', { wait: 100 });
} catch (error) {
  if (error instanceof LockTimeoutError) console.log(`bob waited ${error.waited} ms: ${error.code}`);
}
console.log('inspect:', await bob.inspect('report'));
await held.release();
console.log('stats:', alice.stats());
await Promise.all([alice.close(), bob.close()]);
