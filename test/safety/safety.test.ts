// The fault suite in CI mode: every backend × fault, zero violations, and proof that each fault
// really happened and left the trace it should (a fenced-off stale write, a crash, a blocked lock).
// SAFETY_SEED replays a schedule; SAFETY_REPORT says where the table goes.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { memoryBackend, MemoryStore } from '../../src/backends/memory/index.js';
import type { LockBackend } from '../../src/index.js';
import { check, formatResult } from './checker.js';
import type { Entry, EntryInput } from './history.js';
import { configFromEnv, runSafety, unmet } from './run.js';
import { inProcessSystem, killAllClients, registerSystem } from './systems.js';

after(() => killAllClients());

// Taken before the broken system below is registered, so it covers the real backends only.
const config = configFromEnv({ ...process.env, SAFETY_MODE: 'ci' });

test('safety under faults (CI mode)', { timeout: 600_000 }, async (t) => {
  const report = await runSafety(config, (text) => text.split('\n').forEach((line) => t.diagnostic(line)));
  assert.ok(report.results.length > 0, 'no backend ran');
  for (const r of report.results) {
    const label = `${r.backend} × ${r.fault} (seed ${config.seed}, history ${r.history})`;
    assert.deepEqual(
      r.check.violations.map((v) => v.kind),
      [],
      `${label}: violations\n${formatResult(r.check)}`,
    );
    assert.deepEqual(r.problems, [], label);
    assert.equal(r.injected, r.planned, `${label}: faults injected`);
    assert.ok(r.check.stats.acquisitions > 0, `${label}: no acquisitions`);
  }
  for (const backend of config.backends) {
    const ran = report.results.filter((r) => r.backend === backend).map((r) => r.fault);
    const skipped = report.notApplicable.filter((n) => n.backend === backend).map((n) => n.fault);
    if (report.unavailable.some((u) => u.backend === backend)) continue;
    assert.deepEqual([...ran, ...skipped].sort(), [...config.faults].sort(), `${backend}: every fault ran or was not applicable`);
    // Which faults apply is decided by the systems' shape; pin it, so a fault cannot quietly stop applying.
    const expected = APPLIES[backend];
    if (expected) assert.deepEqual(ran.sort(), [...expected].sort(), `${backend}: the faults that ran`);
  }
});

const CLIENT_FAULTS = ['none', 'pause-holder', 'kill-holder'];
const APPLIES: Record<string, readonly string[]> = {
  memory: CLIENT_FAULTS,
  file: CLIENT_FAULTS,
  redis: [...CLIENT_FAULTS, 'server-restart', 'server-restart-empty', 'server-pause', 'partition-holder', 'slow-network', 'reset-links'],
  redlock: [
    ...CLIENT_FAULTS,
    'minority-loss',
    'majority-loss',
    'node-pause',
    'node-restart-empty',
    'partition-holder',
    'slow-network',
    'reset-links',
  ],
  postgres: [
    ...CLIENT_FAULTS,
    'server-restart',
    'server-restart-empty',
    'server-pause',
    'partition-holder',
    'slow-network',
    'terminate-holder',
    'reset-links',
  ],
  etcd: [...CLIENT_FAULTS, 'partition-holder', 'slow-network', 'reset-links', 'minority-loss', 'majority-loss', 'node-pause'],
};

test('the pipeline catches a lock that lets a second holder in', { timeout: 60_000 }, async () => {
  // Refused requests are granted anyway, with fences above the store's: only exclusion is broken.
  registerSystem({
    name: 'broken',
    boundedLeases: true,
    expect: {},
    create: inProcessSystem(
      'broken',
      () => {
        const store = new MemoryStore();
        let extra = BigInt(Date.now()) * 1000n + 1_000_000_000n;
        return (): LockBackend => {
          const inner = memoryBackend({ store });
          return {
            ...inner,
            acquire: async (request) =>
              (await inner.acquire(request)).granted ? inner.acquire(request) : { granted: true, fence: (extra += 1n) },
          };
        };
      },
      'a memory backend that grants refused requests anyway',
    ),
  });
  const report = await runSafety(
    {
      ...config,
      backends: ['broken'],
      faults: ['none'],
      warmupWrites: 20,
      tailWrites: 20,
      report: join(tmpdir(), `locksmith-safety-broken-${process.pid}.md`),
    },
    () => undefined,
  );
  rmSync(report.path, { force: true });
  const [result] = report.results;
  assert.ok(result);
  rmSync(dirname(result.history), { recursive: true, force: true });
  assert.ok(
    result.check.violations.some((v) => v.kind === 'overlap'),
    formatResult(result.check),
  );
  assert.equal(report.ok, false);
});

test('a fault that did not do what it must is reported', () => {
  const at = (ms: number, proc: string, entry: EntryInput): Entry => ({ t: ms * 1000, proc, ...entry });
  const start = at(10, 'harness', { op: 'fault', phase: 'start', fault: 'majority-loss', target: 'node1+node2+node3', struck: 'p1.t0#1' });
  const heal = at(50, 'harness', { op: 'fault', phase: 'heal', fault: 'majority-loss', target: 'node1+node2+node3' });
  const grant = at(30, 'p2', { op: 'acquire', phase: 'ok', client: 'p2.t0', session: 'p2.t0#4', fence: '9', until: null });
  const timedOut = at(31, 'p2', { op: 'acquire', phase: 'fail', client: 'p2.t1', session: 'p2.t1#2', error: 'ERR_LOCK_TIMEOUT' });
  const entries = [start, grant, timedOut, heal];
  const result = check(entries);
  assert.equal(unmet({ noGrantsDuring: true }, result, entries, 1).length, 1, 'a grant while a majority was down');
  assert.deepEqual(unmet({ progressDuring: true }, result, entries, 1), []);
  assert.equal(unmet({ progressDuring: true }, result, [start, heal], 1).length, 1, 'nobody carried on');
  // No clear failure at all, and a timeout where a clear error was due.
  assert.equal(unmet({ clearFailuresDuring: true }, result, entries, 1).length, 2);
  const clear = at(32, 'p2', { op: 'acquire', phase: 'fail', client: 'p2.t2', session: 'p2.t2#7', error: 'ERR_LOCK_ACQUISITION' });
  assert.deepEqual(unmet({ clearFailuresDuring: true }, result, [start, clear, heal], 1), []);
  assert.equal(unmet({ holderKeepsLease: true }, result, entries, 1).length, 1, 'the struck holder never released');
  const released = at(60, 'p1', { op: 'release', phase: 'ok', client: 'p1.t0', session: 'p1.t0#1' });
  assert.deepEqual(unmet({ holderKeepsLease: true }, result, [...entries, released], 1), []);
});
