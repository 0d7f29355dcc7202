// Memory backend vs async-mutex, in one run: uncontended acquire+release throughput, and the handoff
// gap (release → next waiter holding it) with 16 workers on one key.
// Run: npm run bench   (or node --import tsx bench/memory.ts)

import { Mutex } from 'async-mutex';
// The built package, as users run it (npm run bench builds first).
import { Locksmith } from 'locksmith';
import { memoryBackend } from 'locksmith/memory';
import { handoff, table } from './stats.js';

const N = Number(process.env.BENCH_N ?? 100_000);
const HANDOFFS = Number(process.env.BENCH_HANDOFFS ?? 5_000);
const WORKERS = 16;

async function throughput(label: string, once: () => Promise<void>): Promise<number> {
  for (let i = 0; i < Math.min(N, 5_000); i++) await once(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await once();
  const ops = N / ((performance.now() - t0) / 1000);
  console.error(`  ${label}: ${Math.round(ops).toLocaleString('en-US')} ops/s`);
  return ops;
}

export async function benchMemory(): Promise<Record<string, string | number>[]> {
  const mutex = new Mutex();
  const locks = new Locksmith(memoryBackend(), { ttl: 30_000, wait: 60_000 });
  console.error(`memory backend vs async-mutex (N=${N}, handoffs=${HANDOFFS}, workers=${WORKERS})`);

  const am = await throughput('async-mutex acquire+release', async () => {
    const release = await mutex.acquire();
    release();
  });
  const ls = await throughput('locksmith acquire+release', async () => {
    const lock = await locks.acquire('bench');
    await lock.release();
  });
  const amH = await handoff(WORKERS, HANDOFFS, () => mutex.acquire());
  const lsH = await handoff(WORKERS, HANDOFFS, async () => {
    const lock = await locks.acquire('bench:handoff');
    return () => lock.release();
  });
  await locks.close();
  return [
    { case: 'uncontended acquire+release', 'async-mutex ops/s': am, 'locksmith ops/s': ls, 'ratio (locksmith / async-mutex)': ls / am },
    { case: `${WORKERS} workers, one key: ops/s`, 'async-mutex ops/s': amH.ops, 'locksmith ops/s': lsH.ops, 'ratio (locksmith / async-mutex)': lsH.ops / amH.ops },
    { case: 'handoff gap p50 (ms)', 'async-mutex ops/s': amH.p50, 'locksmith ops/s': lsH.p50, 'ratio (locksmith / async-mutex)': amH.p50 / lsH.p50 },
    { case: 'handoff gap p99 (ms)', 'async-mutex ops/s': amH.p99, 'locksmith ops/s': lsH.p99, 'ratio (locksmith / async-mutex)': amH.p99 / lsH.p99 },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchMemory()));
}
