// The history checker: a pure function from a history (see history.ts) to the violations in it.
//
// (1) Mutual exclusion. A session believes it holds the lock from `acquire ok` until the first of:
//     its release is invoked, its loss is signalled, the validity it was told (acquire/extend `until`)
//     runs out, or its process crashes. A renewal after the validity ran out (a paused process that
//     resumed and renewed) starts a new stretch. The resource is the authority on what happened, so a
//     hold also reaches to every op the resource accepted from the session, whatever it believed.
//     Two sessions whose holds overlap are a violation when the resource accepted ops from both inside
//     the overlap. Otherwise the overlap is harmless to the resource and only counted: as a fenced
//     overlap when both believed they held the lock at once (one side's ops then were rejected or
//     absent: for leases with a ttl the holder knows, still a bug of the lock, which the runner
//     flags), or as a late op when only the widening made them meet (a holder that does not check
//     lock.signal wrote after its lease ended, before the next holder's first op).
// (2) Fences. Writes the resource accepted carry strictly increasing fences, every op it accepted a
//     non-decreasing one; and a grant that began after another was granted carries a higher fence.
// (3) No lost update. Each accepted write stores the previous accepted value + 1, and the final value
//     equals the initial value plus the number of accepted writes.
// (4) Liveness. After each fault heals, some acquisition completes within `boundMs`.
//
// Times are µs on CLOCK_MONOTONIC. The validity a client is told comes as epoch ms (floored) and is
// converted, so overlaps up to `resolutionUs` (default 2 ms) are within measurement error and ignored.

import type { Entry } from './history.js';

export type ViolationKind = 'overlap' | 'fence-order' | 'lost-update' | 'liveness';

export interface Violation {
  kind: ViolationKind;
  message: string;
  /** The few entries around the violation, in time order. */
  window: Entry[];
}

export interface CheckStats {
  /** Client operations invoked (acquire, read, write, release). */
  operations: number;
  acquisitions: number;
  acquireTimeouts: number;
  acquireFailures: number;
  acceptedWrites: number;
  /** Writes the resource rejected because a newer fence had been seen: stale writes fenced off. */
  rejectedStaleWrites: number;
  rejectedReads: number;
  /** Overlaps of believed holds where one side's ops were all fenced off or absent. */
  fencedOverlaps: number;
  /** Ops a holder got served after its lease ended, after another was granted but before that one's first op. */
  lateOps: number;
  losses: number;
  faults: number;
  crashes: number;
  /** ms from invoke to ok of granted acquisitions. */
  acquireP50Ms: number;
  acquireP99Ms: number;
  /** ms from each heal to the next completed acquisition (the worst one). */
  maxRecoveryMs: number;
}

export interface CheckResult {
  ok: boolean;
  violations: Violation[];
  /** Overlaps excused because one side was fenced off or idle (kind 'overlap'), with their windows. */
  fenced: Violation[];
  stats: CheckStats;
}

export interface CheckOptions {
  /** Overrides the history's meta line. */
  boundMs?: number;
  initial?: number;
  resolutionUs?: number;
  /** How many entries a window may hold at most (the ends of a long one are kept). */
  windowCap?: number;
}

interface Stretch {
  start: number;
  /** Where the hold ends, widened past belief to any op the resource accepted from the session. */
  end: number;
  /** Where the session's belief ended (start, for an op accepted outside any belief). */
  believed: number;
}

interface Session {
  id: string;
  client: string;
  proc: string;
  invoke: number | undefined;
  ok: Extract<Entry, { op: 'acquire'; phase: 'ok' }> | undefined;
  fence: bigint | undefined;
  /** Believed-held stretches before clipping, in time order. */
  stretches: Stretch[];
  /** Where belief ends for good: release invoke, loss signalled, crash. */
  cut: number;
  served: Extract<Entry, { op: 'serve' }>[];
}

const INFINITE = Number.POSITIVE_INFINITY;

export function check(history: readonly Entry[], options: CheckOptions = {}): CheckResult {
  const entries = [...history].sort((a, b) => a.t - b.t);
  const meta = entries.find((e): e is Extract<Entry, { op: 'meta' }> => e.op === 'meta')?.meta;
  const boundMs = options.boundMs ?? meta?.boundMs ?? INFINITE;
  const initial = options.initial ?? meta?.initial ?? 0;
  const resolution = options.resolutionUs ?? 2_000;
  const cap = options.windowCap ?? 16;
  const end = entries.at(-1)?.t ?? 0;
  const violations: Violation[] = [];
  const fenced: Violation[] = [];
  const win = (pick: (e: Entry) => boolean, from: number, to: number): Entry[] => window(entries, pick, from, to, cap);

  const sessions = buildSessions(entries, end);
  const stats = countStats(entries, sessions);

  // (1) mutual exclusion -------------------------------------------------------------------------
  const stretches = [...sessions.values()]
    .flatMap((s) => holdStretches(s).map((st) => ({ ...st, session: s })))
    .sort((a, b) => a.start - b.start);
  const reported = new Set<string>();
  const active: typeof stretches = [];
  for (const cur of stretches) {
    for (let i = active.length - 1; i >= 0; i--) if (active[i]!.end < cur.start) active.splice(i, 1);
    for (const other of active) {
      if (other.session === cur.session) continue;
      const from = Math.max(cur.start, other.start);
      const to = Math.min(cur.end, other.end);
      if (to < from) continue;
      // Believed ends carry the ms rounding of expiresAt; a stretch widened to an accepted op does not.
      const believed = Math.min(cur.believed, other.believed) - from;
      const widened = cur.end > cur.believed || other.end > other.believed;
      if (!widened && believed <= resolution) continue;
      const inside = (s: Session): Extract<Entry, { op: 'serve' }>[] => s.served.filter((e) => e.accepted && e.t >= from && e.t <= to);
      const served = inside(other.session).length > 0 && inside(cur.session).length > 0;
      const category = served ? 'violation' : believed > resolution ? 'fenced' : 'late';
      const pair = `${[other.session.id, cur.session.id].sort().join(' & ')} ${category}`;
      if (reported.has(pair)) continue;
      reported.add(pair);
      const ids = new Set([other.session.id, cur.session.id]);
      const both = `sessions ${other.session.id} (fence ${other.session.fence}) and ${cur.session.id} (fence ${cur.session.fence}) held the lock together for ${ms(to - from)} (${ms(Math.max(0, believed))} of it both believing so)`;
      const around = win(
        (e) => ('session' in e && ids.has(e.session)) || e.op === 'fault' || e.op === 'crash',
        Math.min(cur.start, other.start),
        to,
      );
      if (category === 'late') {
        // A holder's op landed after its lease ended (it does not check lock.signal), before the next
        // holder's first op: the resource ordered them by fence, as it should.
        stats.lateOps += 1;
        continue;
      }
      if (category === 'fenced') {
        stats.fencedOverlaps += 1;
        fenced.push({ kind: 'overlap', message: `${both}; the resource served only one of them then`, window: around });
        continue;
      }
      violations.push({ kind: 'overlap', message: `${both} and the resource accepted ops from both in that time`, window: around });
    }
    active.push(cur);
  }

  // (2) fences ----------------------------------------------------------------------------------
  const served = entries.filter((e): e is Extract<Entry, { op: 'serve' }> => e.op === 'serve').sort((a, b) => a.seq - b.seq);
  let lastOp: (typeof served)[number] | undefined;
  let lastWrite: (typeof served)[number] | undefined;
  for (const e of served) {
    if (!e.accepted) continue;
    const fence = BigInt(e.fence);
    const prevOp = lastOp;
    const prevWrite = lastWrite;
    lastOp = e;
    if (e.action === 'write') lastWrite = e;
    const bad =
      prevOp && fence < BigInt(prevOp.fence)
        ? prevOp
        : e.action === 'write' && prevWrite && fence <= BigInt(prevWrite.fence)
          ? prevWrite
          : undefined;
    if (!bad) continue;
    violations.push({
      kind: 'fence-order',
      message: `the resource accepted ${e.action} with fence ${e.fence} (session ${e.session}) after ${bad.action} with fence ${bad.fence} (session ${bad.session})`,
      window: win((x) => x === bad || x === e || ('session' in x && (x.session === e.session || x.session === bad.session)), bad.t, e.t),
    });
  }
  const grants = [...sessions.values()].filter((s) => s.ok && s.fence !== undefined && s.invoke !== undefined);
  const byOk = [...grants].sort((a, b) => a.ok!.t - b.ok!.t);
  const byInvoke = [...grants].sort((a, b) => a.invoke! - b.invoke!);
  let best: Session | undefined;
  let k = 0;
  for (const s of byInvoke) {
    while (k < byOk.length && byOk[k]!.ok!.t < s.invoke!) {
      const g = byOk[k]!;
      if (!best || g.fence! > best.fence!) best = g;
      k += 1;
    }
    if (best && best !== s && s.fence! <= best.fence!) {
      const prior = best;
      violations.push({
        kind: 'fence-order',
        message: `session ${s.id} asked for the lock after ${prior.id} was granted fence ${prior.fence}, yet was granted fence ${s.fence}`,
        window: win(
          (x) => x === prior.ok || x === s.ok || ('session' in x && x.session === s.id && x.op === 'acquire'),
          prior.ok!.t,
          s.ok!.t,
        ),
      });
    }
  }

  // (3) lost updates ----------------------------------------------------------------------------
  let expected = initial;
  let previous: (typeof served)[number] | undefined;
  for (const e of served) {
    if (!(e.accepted && e.action === 'write')) continue;
    if (e.value !== expected + 1) {
      const prev = previous;
      violations.push({
        kind: 'lost-update',
        message:
          `session ${e.session} wrote ${e.value} where ${expected + 1} was due: ` +
          (e.value <= expected ? `${expected + 1 - e.value} accepted update(s) before it were overwritten` : 'it skipped values'),
        window: win((x) => x === prev || x === e || ('session' in x && x.session === e.session), prev?.t ?? e.t, e.t),
      });
    }
    expected = e.value;
    previous = e;
  }
  const final = entries.filter((e): e is Extract<Entry, { op: 'final' }> => e.op === 'final').at(-1);
  if (final && final.value !== initial + stats.acceptedWrites) {
    violations.push({
      kind: 'lost-update',
      message: `final value ${final.value}, but ${stats.acceptedWrites} writes were accepted from ${initial}: ${initial + stats.acceptedWrites - final.value} update(s) lost`,
      window: win((x) => x === final || x === previous, previous?.t ?? final.t, final.t),
    });
  }

  // (4) liveness --------------------------------------------------------------------------------
  const oks = byOk.map((s) => s.ok!.t);
  for (const heal of entries) {
    if (heal.op !== 'fault' || heal.phase !== 'heal') continue;
    const next = oks.find((t) => t >= heal.t);
    const gap = next === undefined ? INFINITE : next - heal.t;
    if (Number.isFinite(gap)) stats.maxRecoveryMs = Math.max(stats.maxRecoveryMs, gap / 1000);
    if (gap <= boundMs * 1000) continue;
    const to = next ?? end;
    violations.push({
      kind: 'liveness',
      message:
        next === undefined
          ? `no acquisition completed after ${heal.fault} on ${heal.target} healed (history ends ${ms(end - heal.t)} later; bound ${boundMs} ms)`
          : `the first acquisition after ${heal.fault} on ${heal.target} healed came ${ms(gap)} later (bound ${boundMs} ms)`,
      window: win((x) => x === heal || (x.op === 'acquire' && x.phase !== 'invoke') || x.op === 'fault', heal.t, to),
    });
  }
  if (stats.acquisitions === 0 && entries.some((e) => e.op === 'acquire')) {
    violations.push({ kind: 'liveness', message: 'no acquisition ever completed', window: win((e) => e.op === 'acquire', 0, end) });
  }

  return { ok: violations.length === 0, violations, fenced, stats };
}

function buildSessions(entries: readonly Entry[], end: number): Map<string, Session> {
  const sessions = new Map<string, Session>();
  const crashes = new Map<string, number>();
  for (const e of entries) if (e.op === 'crash' && !crashes.has(e.target)) crashes.set(e.target, e.t);
  const get = (e: Entry & { session: string; client: string }): Session => {
    let s = sessions.get(e.session);
    if (!s) {
      s = {
        id: e.session,
        client: e.client,
        proc: e.proc,
        invoke: undefined,
        ok: undefined,
        fence: undefined,
        stretches: [],
        cut: INFINITE,
        served: [],
      };
      sessions.set(e.session, s);
    }
    return s;
  };
  for (const e of entries) {
    if (!('session' in e)) continue;
    const s = get(e);
    if (e.op === 'serve') {
      s.served.push(e);
      continue;
    }
    // The resource's entries carry the client's proc only as a label; everything else is the client's.
    s.proc = e.proc;
    if (e.op === 'acquire' && e.phase === 'invoke') s.invoke = e.t;
    else if (e.op === 'acquire' && e.phase === 'ok') {
      s.ok = e;
      s.fence = BigInt(e.fence);
      s.stretches.push({ start: e.t, end: e.until ?? INFINITE, believed: e.until ?? INFINITE });
    } else if (e.op === 'extend') {
      const last = s.stretches.at(-1);
      const until = e.until ?? INFINITE;
      if (last && e.t <= last.end) last.end = last.believed = Math.max(last.end, until);
      else if (s.ok) s.stretches.push({ start: e.t, end: until, believed: until });
    } else if ((e.op === 'release' && e.phase === 'invoke') || e.op === 'lost') s.cut = Math.min(s.cut, e.t);
  }
  for (const s of sessions.values()) s.cut = Math.min(s.cut, crashes.get(s.proc) ?? INFINITE, end);
  return sessions;
}

/**
 * The session's believed stretches, cut where belief ends. An op the resource accepted after belief
 * ended widens the stretch before it up to that op: the session acted as a holder until then.
 */
function holdStretches(s: Session): Stretch[] {
  if (!s.ok) return [];
  const out: Stretch[] = s.stretches
    .map((st) => ({ start: st.start, end: Math.min(st.end, s.cut), believed: Math.min(st.end, s.cut) }))
    .filter((st) => st.end > st.start);
  for (const e of s.served) {
    if (!e.accepted || out.some((st) => e.t >= st.start && e.t <= st.end)) continue;
    const before = out.filter((st) => st.start <= e.t).at(-1);
    if (before) before.end = e.t;
    else out.push({ start: e.t, end: e.t, believed: e.t });
  }
  return out.sort((a, b) => a.start - b.start);
}

function countStats(entries: readonly Entry[], sessions: Map<string, Session>): CheckStats {
  const stats: CheckStats = {
    operations: 0,
    acquisitions: 0,
    acquireTimeouts: 0,
    acquireFailures: 0,
    acceptedWrites: 0,
    rejectedStaleWrites: 0,
    rejectedReads: 0,
    fencedOverlaps: 0,
    lateOps: 0,
    losses: 0,
    faults: 0,
    crashes: 0,
    acquireP50Ms: 0,
    acquireP99Ms: 0,
    maxRecoveryMs: 0,
  };
  for (const e of entries) {
    if ((e.op === 'acquire' || e.op === 'read' || e.op === 'write' || e.op === 'release') && e.phase === 'invoke') stats.operations += 1;
    else if (e.op === 'acquire' && e.phase === 'ok') stats.acquisitions += 1;
    else if (e.op === 'acquire' && e.phase === 'fail') {
      if (e.error === 'ERR_LOCK_TIMEOUT') stats.acquireTimeouts += 1;
      else stats.acquireFailures += 1;
    } else if (e.op === 'serve') {
      if (e.action === 'write' && e.accepted) stats.acceptedWrites += 1;
      else if (e.action === 'write') stats.rejectedStaleWrites += 1;
      else if (!e.accepted) stats.rejectedReads += 1;
    } else if (e.op === 'lost') stats.losses += 1;
    else if (e.op === 'fault' && e.phase === 'start') stats.faults += 1;
    else if (e.op === 'crash') stats.crashes += 1;
  }
  const latencies = [...sessions.values()]
    .filter((s) => s.ok && s.invoke !== undefined)
    .map((s) => (s.ok!.t - s.invoke!) / 1000)
    .sort((a, b) => a - b);
  stats.acquireP50Ms = percentile(latencies, 0.5);
  stats.acquireP99Ms = percentile(latencies, 0.99);
  return stats;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

/** The entries `pick` selects between `from` and `to`, plus a little context; capped, keeping both ends. */
function window(entries: readonly Entry[], pick: (e: Entry) => boolean, from: number, to: number, cap: number): Entry[] {
  const selected = entries.filter((e) => e.t >= from && e.t <= to && pick(e));
  if (selected.length <= cap) return selected;
  const head = Math.ceil(cap / 2);
  return [...selected.slice(0, head), ...selected.slice(selected.length - (cap - head))];
}

function ms(us: number): string {
  return `${(us / 1000).toFixed(1)} ms`;
}

/** One line per entry, times in ms from `origin`. */
export function formatWindow(window: readonly Entry[], origin = window[0]?.t ?? 0): string {
  return window.map((e) => `  ${`+${((e.t - origin) / 1000).toFixed(3)}ms`.padStart(14)}  ${describe(e)}`).join('\n');
}

export function describe(e: Entry): string {
  switch (e.op) {
    case 'acquire':
      return `${e.session} acquire ${e.phase}${e.phase === 'ok' ? ` fence=${e.fence} until=${e.until === null ? '∞' : `+${ms(e.until - e.t)}`}` : ''}${e.phase === 'fail' ? ` ${e.error}` : ''}`;
    case 'extend':
      return `${e.session} extended until=${e.until === null ? '∞' : `+${ms(e.until - e.t)}`}`;
    case 'lost':
      return `${e.session} lease lost (${e.error})`;
    case 'read':
    case 'write':
    case 'release':
      if (e.phase === 'fail') return `${e.session} ${e.op} fail ${e.error}`;
      return `${e.session} ${e.op} ${e.phase}${e.value !== undefined ? ` value=${e.value}` : ''}${'accepted' in e && e.accepted !== undefined ? (e.accepted ? ' accepted' : ' rejected') : ''}`;
    case 'serve':
      return `resource ${e.accepted ? 'ACCEPTED' : 'rejected'} ${e.action} from ${e.session} fence=${e.fence} value=${e.value} (#${e.seq})`;
    case 'fault':
      return `fault ${e.fault} ${e.phase} on ${e.target}${e.detail ? ` (${e.detail})` : ''}`;
    case 'crash':
      return `${e.target} crashed`;
    case 'final':
      return `final value ${e.value}`;
    case 'meta':
      return `run ${e.meta.backend} × ${e.meta.fault}, seed ${e.meta.seed}`;
  }
}

/** A human report of a check: the verdict, then each violation with its window. */
export function formatResult(result: CheckResult): string {
  const show = (v: Violation, label: string): string => `${label}: ${v.message}\n${formatWindow(v.window)}`;
  return [
    result.ok ? 'no violations' : '',
    ...result.violations.map((v) => show(v, v.kind)),
    ...result.fenced.map((v) => show(v, 'fenced overlap (not a violation)')),
  ]
    .filter(Boolean)
    .join('\n\n');
}
