// Another process using a pool: `child.ts KIND TARGET POOL` (KIND file, redis, cluster, postgres or
// etcd; TARGET a directory, a port, ports comma-separated, a JSON pg config, or host:port list). It reads commands, one
// JSON array a line ([id, verb, ...args]), runs them concurrently and answers each with one JSON line
// [id, result]: acquire [member] → member, release → held before the release, waiting → how many
// acquires wait, owner → its lease's owner, members → the members. Its safety poll is 30 s, so an
// acquire that ends sooner was woken.
import { createInterface } from 'node:readline';
import { childBackend } from '../support/child-backend.js';
import { Locksmith, type PoolLease } from '../../src/index.js';

const [kind, target, name] = process.argv.slice(2) as [string, string, string];
const { backend, close } = childBackend(kind, target);
const locks = new Locksmith(backend, { ttl: 30_000, backoff: { initial: 30_000, max: 30_000 } });
const pool = locks.pool(name);
let lease: PoolLease | undefined;

async function run(verb: string, args: string[]): Promise<unknown> {
  if (verb === 'acquire') {
    lease = await pool.acquire({ wait: 20_000, ...(args[0] !== undefined && { member: args[0] }) });
    return lease.member;
  }
  if (verb === 'release') {
    const held = lease!.held;
    await lease!.release();
    return held;
  }
  if (verb === 'waiting') return locks.stats().waiting;
  if (verb === 'owner') return lease!.lock.owner;
  if (verb === 'members') return pool.members();
  throw new Error(`unknown verb ${verb}`);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [id, verb, ...args] = JSON.parse(line) as [number, string, ...string[]];
  run(verb, args).then(
    (result) => process.stdout.write(`${JSON.stringify([id, result])}\n`),
    (error: unknown) => process.stdout.write(`${JSON.stringify([id, { error: String(error) }])}\n`),
  );
});
lines.on('close', () => void locks.close().then(close));
