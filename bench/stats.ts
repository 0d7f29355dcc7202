// Small helpers shared by the benchmarks: percentiles and a fixed-width table.

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
  return [line(cols), '|' + width.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
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
 * A and B for every contender in alternating rounds (the median counts), so load from elsewhere on
 * a shared machine does not favour whoever ran in a quiet moment. Each contender warms up first.
 */
export async function alternating(
  takes: readonly Take[],
  a: { ops: number },
  b: { ops: number; workers: number },
  rounds = 5,
): Promise<{ a: number[]; b: number[] }> {
  const as: number[][] = takes.map(() => []);
  const bs: number[][] = takes.map(() => []);
  for (const take of takes) for (let i = 0; i < 300; i++) await (await take('bench:a'))();
  for (let r = 0; r < rounds; r++) {
    for (const [i, take] of takes.entries()) {
      as[i]!.push(await sequential(take, a.ops));
      bs[i]!.push(await distinctKeys(take, b.ops, b.workers));
    }
  }
  return { a: as.map(median), b: bs.map(median) };
}

export const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
