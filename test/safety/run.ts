// The runner: for each backend × fault, start the resource and the clients, inject the fault on a
// seeded schedule, stop everything, merge the histories and check them; then print and write a table.
//
//   node --import tsx test/safety/run.ts [--backend memory,file] [--fault none,pause-holder,kill-holder]
//   SAFETY_MODE=long     more clients, longer runs, more faults
//   SAFETY_SEED=1234     replay a schedule (the seed is printed at the start of every run)
//   SAFETY_REPORT=path   where the table goes (default: a file in the OS temp dir)
//   SAFETY_KEEP=1        keep every run's directory (histories), not only the failing ones'

import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { check, formatResult, type CheckResult } from './checker.js';
import { faultKind, faultNames, type FaultContext, type FaultKind } from './faults.js';
import { HistoryWriter, mergeHistories, toJsonLines, type Entry } from './history.js';
import { FencedCounter } from './resource.js';
import { Rng, deriveSeed } from './rng.js';
import { systemFactory, systemNames, type ClientHandle, type Expectation, type SystemFactory } from './systems.js';

export interface SafetyConfig {
  mode: 'ci' | 'long';
  seed: number;
  backends: string[];
  /** Fault kinds by name; 'none' is a run without faults. */
  faults: string[];
  ttl: number;
  /** One acquire's wait, ms: longer than a pause, so waiting through one is the normal case. */
  wait: number;
  procs: number;
  tasks: number;
  holdMs: number;
  /** Accepted writes before the first fault, and after the last one. */
  warmupWrites: number;
  tailWrites: number;
  faultsPerRun: number;
  /** ms between faults, drawn from [min, max]. */
  gapMs: [number, number];
  keep: boolean;
  /** Where the table is written. */
  report: string;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): SafetyConfig {
  const long = env.SAFETY_MODE === 'long';
  const seed =
    env.SAFETY_SEED !== undefined && env.SAFETY_SEED !== '' ? Number(env.SAFETY_SEED) >>> 0 : Math.floor(Math.random() * 0xffffffff);
  return {
    mode: long ? 'long' : 'ci',
    seed,
    backends: systemNames(),
    faults: ['none', ...faultNames()],
    ttl: long ? 1_500 : 1_000,
    wait: long ? 8_000 : 5_000,
    procs: long ? 4 : 3,
    tasks: long ? 4 : 3,
    holdMs: 3,
    warmupWrites: long ? 200 : 50,
    tailWrites: long ? 500 : 50,
    faultsPerRun: long ? 8 : 3,
    gapMs: long ? [200, 2_000] : [100, 400],
    keep: env.SAFETY_KEEP === '1',
    report: env.SAFETY_REPORT || join(tmpdir(), `locksmith-safety-${seed}.md`),
  };
}

export interface RunResult {
  backend: string;
  fault: string;
  seed: number;
  /** The liveness bound the run was checked against, ms. */
  boundMs: number;
  note: string;
  planned: number;
  injected: number;
  details: string[];
  check: CheckResult;
  /** Why the run proves less than it should (a fault that left no trace, a client that failed). */
  problems: string[];
  /** The merged history (kept when the run failed or SAFETY_KEEP=1). */
  history: string;
  seconds: number;
}

/** ms within which acquisitions must resume after a fault heals: a lease that must run out, plus slack. */
export function livenessBound(ttl: number): number {
  return ttl + 2_000;
}

/** The faults among `names` that apply to the backend, asked of one system made only for that. */
async function applicable(factory: SystemFactory, names: readonly string[]): Promise<Set<string>> {
  const dir = mkdtempSync(join(tmpdir(), `locksmith-safety-${factory.name}-probe-`));
  const system = await factory.create({ dir });
  try {
    return new Set(names.filter((name) => name === 'none' || faultKind(name).supports(system)));
  } finally {
    await system.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runOne(factory: SystemFactory, fault: FaultKind | undefined, config: SafetyConfig): Promise<RunResult> {
  const began = performance.now();
  const faultName = fault?.name ?? 'none';
  const seed = deriveSeed(config.seed, factory.name, faultName);
  const rng = new Rng(seed);
  const dir = mkdtempSync(join(tmpdir(), `locksmith-safety-${factory.name}-${faultName}-`));
  const harness = new HistoryWriter(join(dir, 'harness.jsonl'), 'harness');
  const boundMs = fault?.bound?.(config.ttl) ?? livenessBound(config.ttl);
  const resource = new FencedCounter(new HistoryWriter(join(dir, 'resource.jsonl'), 'resource'));
  const port = await resource.listen();
  const system = await factory.create({ dir });
  harness.record({
    op: 'meta',
    meta: { backend: factory.name, fault: faultName, seed, ttl: config.ttl, boundMs, initial: 0, note: system.note },
  });
  const key = `safety-${factory.name}-${faultName}`;
  let next = 0;
  const start = (): Promise<ClientHandle> =>
    system.startClient({
      proc: `p${(next += 1)}`,
      tasks: config.tasks,
      key,
      port,
      ttl: config.ttl,
      wait: config.wait,
      seed: rng.seed(),
      holdMs: config.holdMs,
    });
  const clients: ClientHandle[] = [];
  const problems: string[] = [];
  const details: string[] = [];
  let injected = 0;
  const planned = fault ? config.faultsPerRun : 0;
  const writes = (): number => resource.accepted.writes;
  try {
    clients.push(...(await Promise.all(Array.from({ length: config.procs }, start))));
    // A system that cannot even warm up (a backend that fails every call) has nothing to fault.
    const warm = await resource.until(() => writes() >= config.warmupWrites, 30_000);
    if (!warm) problems.push(`only ${writes()} writes during warm-up: no faults injected`);
    const context: FaultContext = {
      system,
      resource,
      ttl: config.ttl,
      random: rng,
      clients: () => clients,
      record: (entry) => harness.record(entry),
      replace: async (crashed) => {
        const i = clients.indexOf(crashed);
        const fresh = await start();
        if (i >= 0) clients.splice(i, 1, fresh);
        else clients.push(fresh);
      },
    };
    for (let i = 0; i < planned && fault && warm; i++) {
      // The schedule: a seeded gap, then the fault strikes the next holder to read.
      await delay(rng.int(...config.gapMs));
      const outcome = await fault.inject(context);
      details.push(outcome.detail);
      if (outcome.injected) injected += 1;
      // Let acquisitions resume before the next fault (the checker holds them to the bound).
      const after = writes();
      if (!(await resource.until(() => writes() > after, boundMs + 2_000)))
        problems.push(`no write within ${boundMs + 2_000} ms after fault ${i + 1}`);
    }
    const tail = writes() + config.tailWrites;
    if (warm && !(await resource.until(() => writes() >= tail, 30_000))) problems.push(`only ${writes()} of ${tail} writes by the end`);
  } finally {
    await Promise.all(clients.map((c) => c.stop(5_000)));
    for (const c of clients) if (c.failure) problems.push(c.failure);
    harness.record({ op: 'final', value: resource.value });
    harness.close();
    await resource.close();
    await system.close();
  }
  if (injected < planned) problems.push(`${injected} of ${planned} faults injected (${details.join('; ')})`);

  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .map((f) => join(dir, f));
  const entries = mergeHistories(files);
  const history = join(dir, 'history.jsonl');
  writeFileSync(history, toJsonLines(entries));
  const result = check(entries);
  const expect = factory.expect[faultName] ?? {};
  problems.push(...unmet(expect, result, entries, injected));
  if (factory.boundedLeases && !expect.leasesMayBeLost && result.stats.fencedOverlaps > 0) {
    problems.push(
      `${result.stats.fencedOverlaps} overlap(s) of bounded leases: fencing saved the resource, but the lock let two holders in`,
    );
  }
  const failed = !result.ok || problems.length > 0;
  if (!failed && !config.keep) rmSync(dir, { recursive: true, force: true });
  else for (const f of readdirSync(dir)) if (f.endsWith('.jsonl') && f !== 'history.jsonl') rmSync(join(dir, f));
  return {
    backend: factory.name,
    fault: faultName,
    seed,
    boundMs,
    note: system.note,
    planned,
    injected,
    details,
    check: result,
    problems,
    history,
    seconds: (performance.now() - began) / 1000,
  };
}

/** What the backend says this fault must visibly do, checked against the history. */
export function unmet(expect: Expectation, result: CheckResult, entries: readonly Entry[], injected: number): string[] {
  const out: string[] = [];
  if (expect.staleWritePerFault && result.stats.rejectedStaleWrites < injected) {
    out.push(`expected a rejected stale write per fault (${injected}), saw ${result.stats.rejectedStaleWrites}: the pause proved nothing`);
  }
  if (expect.crashPerFault && result.stats.crashes < injected) out.push(`expected ${injected} crashes, saw ${result.stats.crashes}`);
  const during = faultWindows(entries);
  const inside = (pick: (e: Entry) => boolean): number[] =>
    during.map((w) => entries.filter((e) => e.t >= w.start.t && e.t <= w.heal && pick(e)).length);
  const granted = (e: Entry): boolean => e.op === 'acquire' && e.phase === 'ok';
  if (expect.noGrantsDuring) {
    const n = inside(granted).reduce((a, b) => a + b, 0);
    if (n > 0) out.push(`${n} acquisition(s) completed while the fault was in force`);
  }
  if (expect.progressDuring) {
    const idle = inside(granted).filter((n) => n === 0).length;
    if (idle > 0) out.push(`no acquisition completed during ${idle} of ${during.length} faults: the rest of the system did not carry on`);
  }
  if (expect.clearFailuresDuring) {
    const failed =
      (clear: boolean) =>
      (e: Entry): boolean =>
        e.op === 'acquire' && e.phase === 'fail' && (e.error === 'ERR_LOCK_ACQUISITION') === clear;
    const silent = inside(failed(true)).filter((n) => n === 0).length;
    if (silent > 0) out.push(`no acquisition failed with ERR_LOCK_ACQUISITION during ${silent} of ${during.length} faults`);
    const unclear = inside(failed(false)).reduce((a, b) => a + b, 0);
    if (unclear > 0) out.push(`${unclear} acquisition(s) failed otherwise than with ERR_LOCK_ACQUISITION (a timeout?) during the faults`);
  }
  if (expect.holderKeepsLease) {
    for (const { start } of during) {
      if (start.struck === undefined) continue;
      const released = entries.some((e) => e.op === 'release' && e.phase === 'ok' && e.session === start.struck);
      if (!released) out.push(`${start.struck}, struck by ${start.fault}, did not release cleanly: its lease did not survive`);
    }
  }
  if (expect.othersBlocked) {
    let open: Extract<Entry, { op: 'fault' }> | undefined;
    for (const e of entries) {
      if (e.op === 'fault') open = e.phase === 'start' ? e : undefined;
      else if (open && e.op === 'acquire' && e.phase === 'ok' && e.proc !== open.target) {
        out.push(`${e.session} acquired while ${open.target} was paused holding the lock`);
        break;
      }
    }
  }
  return out;
}

/** Each fault's start and the time of its heal (the history's end if it never healed). */
function faultWindows(entries: readonly Entry[]): { start: Extract<Entry, { op: 'fault' }>; heal: number }[] {
  const out: { start: Extract<Entry, { op: 'fault' }>; heal: number }[] = [];
  let open: Extract<Entry, { op: 'fault' }> | undefined;
  for (const e of entries) {
    if (e.op !== 'fault') continue;
    if (e.phase === 'start') open = e;
    else if (open) {
      out.push({ start: open, heal: e.t });
      open = undefined;
    }
  }
  if (open) out.push({ start: open, heal: entries.at(-1)?.t ?? open.t });
  return out;
}

export interface SafetyReport {
  results: RunResult[];
  /** Backend × fault pairs that were skipped because the fault does not apply to that backend. */
  notApplicable: { backend: string; fault: string }[];
  /** Backends skipped because they cannot run here (a server binary missing), with the reason. */
  unavailable: { backend: string; reason: string }[];
  table: string;
  path: string;
  ok: boolean;
}

export async function runSafety(config: SafetyConfig, log: (line: string) => void = console.log): Promise<SafetyReport> {
  log(
    `safety: mode ${config.mode}, seed ${config.seed} (replay: SAFETY_SEED=${config.seed}${config.mode === 'long' ? ' SAFETY_MODE=long' : ''})`,
  );
  const results: RunResult[] = [];
  const notApplicable: SafetyReport['notApplicable'] = [];
  const unavailable: SafetyReport['unavailable'] = [];
  for (const backend of config.backends) {
    const factory = systemFactory(backend);
    const reason = await factory.unavailable?.();
    if (reason) {
      log(`safety: ${backend} skipped: ${reason}`);
      unavailable.push({ backend, reason });
      continue;
    }
    const applies = await applicable(factory, config.faults);
    for (const name of config.faults) {
      if (!applies.has(name)) {
        notApplicable.push({ backend, fault: name });
        continue;
      }
      const result = await runOne(factory, name === 'none' ? undefined : faultKind(name), config);
      results.push(result);
      const verdict = result.check.ok && result.problems.length === 0 ? 'ok' : 'FAILED';
      log(
        `safety: ${backend} × ${result.fault}: ${verdict} in ${result.seconds.toFixed(1)} s, ${result.check.stats.acquisitions} acquisitions`,
      );
      if (!result.check.ok) log(formatResult(result.check));
      for (const p of result.problems) log(`  problem: ${p}`);
      if (verdict !== 'ok') log(`  history: ${result.history} (check again: node --import tsx test/safety/check.ts ${result.history})`);
    }
  }
  const table = formatTable(results, config);
  writeFileSync(config.report, table);
  log(`\n${table}\nsafety: table written to ${config.report}`);
  return {
    results,
    notApplicable,
    unavailable,
    table,
    path: config.report,
    ok: results.every((r) => r.check.ok && r.problems.length === 0),
  };
}

export function formatTable(results: readonly RunResult[], config: SafetyConfig): string {
  const header =
    '| backend | fault | faults | operations | acquisitions | rejected stale writes | late ops | fenced overlaps | violations | p99 acquire (ms) | worst recovery (ms) | recovery bound (ms) |\n' +
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |';
  const rows = results.map((r) => {
    const s = r.check.stats;
    return `| ${r.backend} | ${r.fault} | ${r.injected}/${r.planned} | ${s.operations} | ${s.acquisitions} | ${s.rejectedStaleWrites} | ${s.lateOps} | ${s.fencedOverlaps} | ${r.check.violations.length} | ${s.acquireP99Ms.toFixed(1)} | ${r.fault === 'none' ? '– | –' : `${s.maxRecoveryMs.toFixed(0)} | ${r.boundMs}`} |`;
  });
  const notes = [...new Map(results.map((r) => [r.backend, r.note])).entries()].map(([b, n]) => `- ${b}: ${n}`);
  const faults = [...new Set(results.map((r) => r.fault))].filter((f) => f !== 'none').map((f) => `- ${f}: ${faultKind(f).summary}`);
  return [
    `Mode ${config.mode}, seed ${config.seed}: ${config.procs} client processes × ${config.tasks} tasks, ttl ${config.ttl} ms, ${config.faultsPerRun} faults per run.`,
    '',
    header,
    ...rows,
    '',
    ...notes,
    '',
    ...faults,
    '',
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const config = configFromEnv();
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 2) {
    const list = (args[i + 1] ?? '').split(',').filter(Boolean);
    if (args[i] === '--backend') config.backends = list;
    else if (args[i] === '--fault') config.faults = list;
    else throw new Error(`usage: run.ts [--backend ${systemNames().join(',')}] [--fault none,${faultNames().join(',')}]`);
  }
  const report = await runSafety(config);
  process.exitCode = report.ok ? 0 : 1;
}
