// Memory backend vs async-mutex, in one run: uncontended acquire+release throughput, and 16 workers
// on one key (throughput and the handoff gap: release → next waiter holding it). Contenders run in
// rounds, in a fresh random order each round; ratios are taken within a round (see stats.ts rounds).
// BENCH_BASELINE=/path/to/another/build/dist/esm adds that build as a contender (before/after).
// Run: npm run bench   (or node --import tsx bench/memory.ts)

import { Mutex } from 'async-mutex';
// The built package, as users run it (npm run bench builds first).
import { Locksmith, type Lock } from 'fencelock';
import { memoryBackend } from 'fencelock/memory';
import { handoff, median, rounds, table } from './stats.js';

const N = Number(process.env.BENCH_N ?? 30_000);
const HANDOFFS = Number(process.env.BENCH_HANDOFFS ?? 5_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const WORKERS = 16;

/**
 * Each library as its users write it: take a hold, then free it. Both halves are plain calls, with no
 * wrapper that one contender pays for and the other does not.
 */
interface Contender {
  name: string;
  take: (key: string) => Promise<unknown>;
  free: (hold: never) => unknown;
  close?: () => Promise<void>;
}

async function locksmith(name: string, lib: { Locksmith: typeof Locksmith; memoryBackend: typeof memoryBackend }): Promise<Contender> {
  const locks = new lib.Locksmith(lib.memoryBackend(), { ttl: 30_000, wait: 60_000 });
  return {
    name,
    take: (key) => locks.acquire(key),
    free: (lock: Lock) => lock.release(),
    close: () => locks.close(),
  };
}

async function contenders(): Promise<Contender[]> {
  const mutexes = new Map<string, Mutex>();
  const list: Contender[] = [
    {
      name: 'async-mutex',
      take: (key) => (mutexes.get(key) ?? mutexes.set(key, new Mutex()).get(key)!).acquire(),
      free: (release: () => void) => release(),
    },
    await locksmith('locksmith', { Locksmith, memoryBackend }),
  ];
  const baseline = process.env.BENCH_BASELINE;
  if (baseline) {
    const main = (await import(`${baseline}/index.js`)) as { Locksmith: typeof Locksmith };
    const memory = (await import(`${baseline}/backends/memory/index.js`)) as { memoryBackend: typeof memoryBackend };
    list.push(await locksmith('locksmith (baseline)', { Locksmith: main.Locksmith, memoryBackend: memory.memoryBackend }));
  }
  return list;
}

/** A hold's release, as the shared handoff harness takes it (the same wrapping for every contender). */
const releaser =
  (c: Contender) =>
  (key: string): Promise<() => unknown> =>
    c.take(key).then((hold) => () => c.free(hold as never));

async function uncontended(c: Contender): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await c.free((await c.take('bench')) as never);
  return N / ((performance.now() - t0) / 1000);
}

export async function benchMemory(): Promise<Record<string, string | number>[]> {
  const list = await contenders();
  console.error(`memory backend vs async-mutex (N=${N}, handoffs=${HANDOFFS}, workers=${WORKERS}, rounds=${ROUNDS})`);
  const warm = async (): Promise<void> => {
    for (const c of list) for (let i = 0; i < 5_000; i++) await c.free((await c.take('bench')) as never);
  };
  const A = await rounds(
    list.map((c) => () => uncontended(c)),
    ROUNDS,
    warm,
  );
  const gaps = list.map(() => ({ p50: [] as number[], p99: [] as number[] }));
  const C = await rounds(
    list.map((c, i) => async () => {
      const h = await handoff(WORKERS, HANDOFFS, () => releaser(c)('bench:handoff'));
      gaps[i]!.p50.push(h.p50);
      gaps[i]!.p99.push(h.p99);
      return h.ops;
    }),
    ROUNDS,
  );
  for (const c of list) await c.close?.();
  return list.map((c, i) => ({
    contender: c.name,
    'uncontended ops/s': A.ops[i]!,
    'vs async-mutex': A.ratio[i]!,
    [`${WORKERS} workers one key ops/s`]: C.ops[i]!,
    'vs async-mutex ': C.ratio[i]!,
    'gap p50 ms': median(gaps[i]!.p50),
    'gap p99 ms': median(gaps[i]!.p99),
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchMemory()));
}
