// A worker that does its job only while it is the leader: three candidates, one leads at a time; when
// the leader steps down (or dies: its lease ends), another is elected and carries on. The work carries
// the term's fence, so a store can refuse a deposed leader's late writes.
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/leader-worker.ts
import { Redis } from 'ioredis';
import { Locksmith } from 'fencelock';
import { redisBackend } from 'fencelock/redis';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const terms: string[] = [];
let lastFence = 0n;

async function worker(name: string): Promise<void> {
  const client = new Redis(url);
  const locks = new Locksmith(redisBackend({ client }), { ttl: 2_000 });
  const election = locks.election('example:scheduler', { value: name });
  try {
    await election.campaign();
    const fence = election.fence!;
    if (fence <= lastFence) throw new Error(`fence went backwards: ${fence} <= ${lastFence}`);
    lastFence = fence;
    terms.push(name);
    console.log(`${name} leads (fence ${fence}), leader() says ${(await election.leader())?.value}`);
    for (let tick = 0; tick < 3 && election.isLeader; tick++) await new Promise((r) => setTimeout(r, 50)); // the job
    await election.resign();
  } finally {
    await locks.close();
    client.disconnect();
  }
}

await Promise.all(['node-a', 'node-b', 'node-c'].map(worker));
if (new Set(terms).size !== 3) throw new Error(`expected three terms, got ${terms.join(', ')}`);
console.log('terms in order:', terms.join(' → '));
