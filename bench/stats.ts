// Small helpers shared by the benchmarks: percentiles and a fixed-width table.

import type { Pinning } from './pin.js';

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

export function table(rows: Record<string, string | number>[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0]!);
  const cell = (v: string | number | undefined): string => (typeof v === 'number' ? fmt(v) : (v ?? ''));
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]): string => '| ' + vals.map((v, i) => v.padEnd(width[i]!)).join(' | ') + ' |';
  return [
    line(cols),
    '|' + width.map((w) => '-'.repeat(w + 2)).join('|') + '|',
    ...rows.map((r) => line(cols.map((c) => cell(r[c])))),
  ].join('\n');
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(3);
}

/**
 * `workers` tasks loop on one lock until `count` grants in all, each holding it for `hold()`; records
 * the gap from each release to the next grant (the handoff latency) and the throughput.
 */
export async function handoff(
  workers: number,
  count: number,
  take: () => Promise<() => unknown>,
  hold: () => Promise<void> = () => Promise.resolve(),
): Promise<{ ops: number; p50: number; p99: number }> {
  const gaps: number[] = [];
  let lastRelease = 0;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (done < count) {
        const release = await take();
        if (lastRelease) gaps.push(performance.now() - lastRelease);
        done += 1;
        await hold();
        lastRelease = performance.now();
        await release();
      }
    }),
  );
  return { ...summarize(gaps), ops: done / ((performance.now() - t0) / 1000) };
}

/** Takes a lock on `key` and resolves with its release. */
export type Take = (key: string) => Promise<() => Promise<unknown>>;

/** A: `ops` sequential acquire+release on one key; ops/s. */
export async function sequential(take: Take, ops: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < ops; i++) await (await take('bench:a'))();
  return ops / ((performance.now() - t0) / 1000);
}

/** B: `workers` tasks, each on its own key, `ops` acquire+release in all; ops/s. */
export async function distinctKeys(take: Take, ops: number, workers: number): Promise<number> {
  const per = ops / workers;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; i < per; i++) await (await take(`bench:b:${w}`))();
    }),
  );
  return ops / ((performance.now() - t0) / 1000);
}

/**
 * Runs `measure` for every contender, round after round, in a fresh random order each round, and
 * returns per contender the median throughput and the median of its per-round ratio to the first
 * contender (the floor). A ratio taken within one round compares contenders under the same load, so
 * the slow drifts of a shared VM cancel out of it; a random order keeps any one contender from
 * always following another. Each contender warms up first.
 */
export async function rounds(
  contenders: readonly (() => Promise<number>)[],
  count: number,
  warm?: () => Promise<void>,
): Promise<{ ops: number[]; ratio: number[]; ratioTo: (j: number) => number[] }> {
  await warm?.();
  const ops: number[][] = contenders.map(() => []);
  const ratios: number[][] = contenders.map(() => []);
  for (let r = 0; r < count; r++) {
    const order = contenders.map((_, i) => i).sort(() => Math.random() - 0.5);
    const round: number[] = [];
    for (const i of order) round[i] = await contenders[i]!();
    for (const [i, v] of round.entries()) {
      ops[i]!.push(v);
      ratios[i]!.push(v / round[0]!);
    }
  }
  // Per contender, the median of its per-round ratio to contender j (a peer, say), taken within rounds too.
  const ratioTo = (j: number): number[] => ops.map((mine) => median(mine.map((v, r) => v / ops[j]![r]!)));
  return { ops: ops.map(median), ratio: ratios.map(median), ratioTo };
}

/**
 * Sequential work, contenders interleaved op by op: in each of `count` rounds, every contender does
 * `ops` operations one at a time, taking turns (in a fresh random order each round), each operation
 * timed on its own. A sequential op is one round trip, whose latency on a shared VM comes in spells
 * longer than one op and shorter than a round; taking turns op by op puts every contender in the
 * same spells, which rounds of one contender at a time cannot. The price: every op starts with the
 * caches warm for another library's code, which costs most the contender with the deepest code path
 * (ours, against a raw script): a bias against us, never for us. Same result shape as rounds().
 */
export async function interleaved(
  contenders: readonly (() => Promise<unknown>)[],
  count: number,
  ops: number,
): Promise<{ ops: number[]; ratio: number[]; ratioTo: (j: number) => number[] }> {
  const per: number[][] = contenders.map(() => []);
  for (let r = 0; r < count; r++) {
    const order = contenders.map((_, i) => i).sort(() => Math.random() - 0.5);
    const spent = contenders.map(() => 0);
    for (let k = 0; k < ops; k++) {
      for (const i of order) {
        const t0 = performance.now();
        await contenders[i]!();
        spent[i]! += performance.now() - t0;
      }
    }
    for (const [i, ms] of spent.entries()) per[i]!.push(ops / (ms / 1000));
  }
  const ratioTo = (j: number): number[] => per.map((mine) => median(mine.map((v, r) => v / per[j]![r]!)));
  return { ops: per.map(median), ratio: ratioTo(0), ratioTo };
}

/**
 * A and B for every contender (see rounds), `rounds` times each. A starts after `a.warm` pairs each
 * (default 300); with `a.pinning` (pin.ts), A runs on one CPU and B on every CPU.
 */
export async function alternating(
  takes: readonly Take[],
  a: { ops: number; warm?: number; pinning?: Pinning },
  b: { ops: number; workers: number },
  count = 9,
): Promise<{ a: number[]; b: number[]; aRatio: number[]; bRatio: number[] }> {
  const warm = async (): Promise<void> => {
    for (const take of takes) for (let i = 0; i < (a.warm ?? 300); i++) await (await take('bench:a'))();
  };
  const A = await rounds(
    takes.map((take) => async () => {
      await a.pinning?.pin();
      return sequential(take, a.ops);
    }),
    count,
    warm,
  );
  await a.pinning?.unpin();
  const B = await rounds(
    takes.map((take) => () => distinctKeys(take, b.ops, b.workers)),
    count,
  );
  return { a: A.ops, b: B.ops, aRatio: A.ratio, bRatio: B.ratio };
}

/** One contender's row of an A/B/C bench: A and B from alternating(), C from handoff(). */
export function abcRow(
  contender: string,
  i: number,
  ab: { a: number[]; b: number[]; aRatio: number[]; bRatio: number[] },
  workers: number,
  c: { ops: number; p50: number; p99: number },
): Record<string, string | number> {
  return {
    contender,
    'A seq ops/s': ab.a[i]!,
    'A vs raw': ab.aRatio[i]!,
    [`B ${workers} keys ops/s`]: ab.b[i]!,
    'B vs raw': ab.bRatio[i]!,
    'C ops/s': c.ops,
    'C gap p50 ms': c.p50,
    'C gap p99 ms': c.p99,
  };
}

export const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
