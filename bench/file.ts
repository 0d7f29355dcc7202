// File backend vs proper-lockfile, in one run: sequential acquire+release on one name, and the
// handoff gap with 8 workers contending for one name (release → next holder).
// Run: node --import tsx bench/file.ts
// BENCH_BASELINE=/path/to/another/built/checkout adds that build's file backend to the same run
// (say, main's dist and addon), so a change is compared with what it changes in one run.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
// The built package, as users run it (npm run bench builds first).
import { Locksmith } from 'fencelock';
import { fileBackend } from 'fencelock/file';
import { handoff, table } from './stats.js';

type Factory = typeof fileBackend;
const BASELINE = process.env.BENCH_BASELINE;
const baseline: Factory | undefined = BASELINE
  ? ((await import(join(BASELINE, 'dist/esm/backends/file/index.js'))) as { fileBackend: Factory }).fileBackend
  : undefined;

const N = Number(process.env.BENCH_N ?? 5_000);
const HANDOFFS = Number(process.env.BENCH_HANDOFFS ?? 400);
const WORKERS = 8;

/** Throughput of each contender, measured in alternating rounds (the median round counts) so that a
 * noisy neighbour on a shared machine does not favour whichever ran in a quiet moment. */
async function sequential(contenders: (() => Promise<void>)[]): Promise<number[]> {
  const ROUNDS = 5;
  for (const once of contenders) for (let i = 0; i < 1_000; i++) await once(); // warm-up: JIT, file cache
  const rounds: number[][] = contenders.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [c, once] of contenders.entries()) {
      const t0 = performance.now();
      for (let i = 0; i < N / ROUNDS; i++) await once();
      rounds[c]!.push(N / ROUNDS / ((performance.now() - t0) / 1000));
    }
  }
  return rounds.map((xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
}

export async function benchFile(): Promise<Record<string, string | number>[]> {
  const dir = mkdtempSync(join(tmpdir(), 'locksmith-bench-'));
  const target = join(dir, 'resource');
  writeFileSync(target, '');
  // proper-lockfile as people use it for waiting: retries with its exponential backoff, tightest floor.
  const retry = { retries: { retries: 10_000, factor: 1.2, minTimeout: 1, maxTimeout: 20 } };
  // Separate backends per worker, as separate processes would be.
  const clients = (make: Factory, where: string): Locksmith[] =>
    Array.from({ length: WORKERS + 1 }, () => new Locksmith(make({ dir: where }), { ttl: 30_000, wait: 60_000 }));
  const [locks, ...workers] = clients(fileBackend, dir) as [Locksmith, ...Locksmith[]];
  // Its own directory: a baseline of another version may use another lock file format.
  const base = baseline && clients(baseline, mkdtempSync(join(tmpdir(), 'locksmith-bench-base-')));
  console.error(
    `file backend vs proper-lockfile (N=${N}, handoffs=${HANDOFFS}, workers=${WORKERS})${BASELINE ? `, baseline ${BASELINE}` : ''}`,
  );

  const [plSeq, lsSeq, baseSeq] = (await sequential([
    async () => {
      const release = await lockfile.lock(target);
      await release();
    },
    async () => {
      const lock = await locks.acquire('bench-sequential'); // not 'resource': proper-lockfile uses resource.lock
      await lock.release();
    },
    ...(base ? [async () => void (await (await base[0]!.acquire('bench-sequential')).release())] : []),
  ])) as [number, number, number?];
  const plH = await handoff(WORKERS, HANDOFFS, () => lockfile.lock(target, retry));
  let w = 0;
  const lsH = await handoff(WORKERS, HANDOFFS, async () => {
    const lock = await workers[w++ % WORKERS]!.acquire('resource:handoff');
    return () => lock.release();
  });
  let b = 0;
  const baseH =
    base &&
    (await handoff(WORKERS, HANDOFFS, async () => {
      const lock = await base[1 + (b++ % WORKERS)]!.acquire('resource:handoff');
      return () => lock.release();
    }));
  await Promise.all([locks, ...workers, ...(base ?? [])].map((l) => l.close()));
  rmSync(dir, { recursive: true, force: true });
  const row = (name: string, pl: number, ls: number, bl: number | undefined, higherIsBetter: boolean): Record<string, string | number> => ({
    case: name,
    'proper-lockfile': pl,
    locksmith: ls,
    'ratio (locksmith / proper-lockfile)': higherIsBetter ? ls / pl : pl / ls,
    ...(bl === undefined ? {} : { baseline: bl, 'baseline ratio': higherIsBetter ? bl / pl : pl / bl }),
  });
  return [
    row('sequential acquire+release, ops/s', plSeq, lsSeq, baseSeq, true),
    row(`${WORKERS} workers on one name, ops/s`, plH.ops, lsH.ops, baseH?.ops, true),
    row('handoff gap p50, ms', plH.p50, lsH.p50, baseH?.p50, false),
    row('handoff gap p99, ms', plH.p99, lsH.p99, baseH?.p99, false),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchFile()));
}
