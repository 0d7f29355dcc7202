// The checker against hand-made histories: each planted violation is caught, with its kind and a
// window that holds the offending ops; the benign shapes that faults produce are not flagged.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { check, formatResult, type CheckResult, type ViolationKind } from './checker.js';
import type { Entry } from './history.js';

const ms = (n: number): number => n * 1_000;

/** Builds a history; times are given in ms, sessions as `pN.tM#K`. */
class History {
  readonly entries: Entry[] = [];
  #seq = 0;

  constructor(boundMs = 3_000) {
    this.entries.push({
      t: 0,
      proc: 'harness',
      op: 'meta',
      meta: { backend: 'test', fault: 'test', seed: 1, ttl: 1_000, boundMs, initial: 0 },
    });
  }

  #who(session: string): { proc: string; client: string; session: string } {
    const client = session.split('#')[0]!;
    return { proc: client.split('.')[0]!, client, session };
  }

  /** Invoked 1 ms before it is granted; valid for `validMs` unless given null (no ttl). */
  acquire(session: string, at: number, fence: number, validMs: number | null = 1_000): this {
    const who = this.#who(session);
    this.entries.push({ t: ms(at - 1), ...who, op: 'acquire', phase: 'invoke' });
    this.entries.push({
      t: ms(at),
      ...who,
      op: 'acquire',
      phase: 'ok',
      fence: String(fence),
      until: validMs === null ? null : ms(at + validMs),
    });
    return this;
  }

  serve(session: string, at: number, action: 'read' | 'write', fence: number, value: number, accepted = true): this {
    const { client } = this.#who(session);
    this.#seq += 1;
    this.entries.push({
      t: ms(at),
      proc: 'resource',
      client,
      session,
      op: 'serve',
      action,
      fence: String(fence),
      accepted,
      value,
      seq: this.#seq,
    });
    return this;
  }

  /** An accepted read of `value - 1` at `at`, and the write of `value` 1 ms later. */
  rmw(session: string, at: number, fence: number, value: number): this {
    return this.serve(session, at, 'read', fence, value - 1).serve(session, at + 1, 'write', fence, value);
  }

  release(session: string, at: number): this {
    this.entries.push({ t: ms(at), ...this.#who(session), op: 'release', phase: 'invoke' });
    return this;
  }

  lost(session: string, at: number): this {
    this.entries.push({ t: ms(at), ...this.#who(session), op: 'lost', error: 'ERR_LOCK_EXPIRED' });
    return this;
  }

  extend(session: string, at: number, validMs: number): this {
    this.entries.push({ t: ms(at), ...this.#who(session), op: 'extend', until: ms(at + validMs) });
    return this;
  }

  crash(proc: string, at: number): this {
    this.entries.push({ t: ms(at), proc: 'harness', op: 'crash', target: proc });
    return this;
  }

  fault(at: number, phase: 'start' | 'heal', target = 'p1'): this {
    this.entries.push({ t: ms(at), proc: 'harness', op: 'fault', phase, fault: 'pause-holder', target });
    return this;
  }

  final(at: number, value: number): this {
    this.entries.push({ t: ms(at), proc: 'harness', op: 'final', value });
    return this;
  }

  check(): CheckResult {
    return check(this.entries);
  }
}

function only(result: CheckResult, kind: ViolationKind): CheckResult['violations'][number] {
  assert.equal(result.ok, false, 'a violation was expected');
  const found = result.violations.filter((v) => v.kind === kind);
  assert.ok(found.length > 0, `expected ${kind}, got: ${formatResult(result)}`);
  return found[0]!;
}

function holds(window: readonly Entry[], pick: (e: Entry) => boolean, what: string): void {
  assert.ok(window.some(pick), `the window lacks ${what}:\n${window.map((e) => JSON.stringify(e)).join('\n')}`);
}

const served =
  (session: string, action: 'read' | 'write', accepted = true) =>
  (e: Entry) =>
    e.op === 'serve' && e.session === session && e.action === action && e.accepted === accepted;

describe('safety checker', () => {
  test('a clean history passes, and its statistics add up', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 100)
      .rmw('p1.t0#1', 11, 100, 1)
      .release('p1.t0#1', 13)
      .acquire('p2.t0#1', 14, 101)
      .rmw('p2.t0#1', 15, 101, 2)
      .release('p2.t0#1', 17)
      .acquire('p1.t1#1', 18, 102)
      .rmw('p1.t1#1', 19, 102, 3)
      .release('p1.t1#1', 21)
      .final(30, 3);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
    assert.equal(result.stats.acquisitions, 3);
    assert.equal(result.stats.acceptedWrites, 3);
    assert.equal(result.stats.operations, 6);
    assert.equal(result.stats.acquireP99Ms, 1);
  });

  test('a planted overlap: two holders at once, both served', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 100)
      .acquire('p2.t0#1', 20, 101)
      .serve('p1.t0#1', 21, 'read', 100, 0)
      .serve('p2.t0#1', 22, 'read', 101, 0)
      .serve('p1.t0#1', 30, 'write', 100, 1, false)
      .release('p1.t0#1', 31)
      .serve('p2.t0#1', 32, 'write', 101, 1)
      .release('p2.t0#1', 33)
      .final(40, 1);
    const v = only(h.check(), 'overlap');
    assert.match(v.message, /p1\.t0#1.*p2\.t0#1/);
    holds(v.window, served('p1.t0#1', 'read'), "p1's read");
    holds(v.window, served('p2.t0#1', 'read'), "p2's read");
    holds(v.window, (e) => e.op === 'acquire' && e.phase === 'ok' && e.session === 'p2.t0#1', "p2's grant");
    assert.ok(v.window.length <= 16);
  });

  test('an overlap where one side was fenced off is counted, not flagged', () => {
    // The lock let p2 in while p1's lease was valid, but p1 had read before and its write was
    // rejected: the resource is intact. The runner holds ttl backends to zero such overlaps.
    const h = new History()
      .acquire('p1.t0#1', 10, 100)
      .serve('p1.t0#1', 11, 'read', 100, 0)
      .acquire('p2.t0#1', 20, 101)
      .serve('p2.t0#1', 21, 'read', 101, 0)
      .serve('p1.t0#1', 30, 'write', 100, 1, false)
      .release('p1.t0#1', 31)
      .serve('p2.t0#1', 32, 'write', 101, 1)
      .release('p2.t0#1', 33)
      .final(40, 1);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
    assert.equal(result.stats.fencedOverlaps, 1);
  });

  test('a stale holder fenced off is not a violation: its overlap is counted as fenced', () => {
    // p1 was paused holding the lock with no ttl it knew of (no `until`); p2 got in; p1's late write
    // came back rejected.
    const h = new History()
      .acquire('p1.t0#1', 10, 100, null)
      .serve('p1.t0#1', 11, 'read', 100, 0)
      .acquire('p2.t0#1', 1_020, 101)
      .rmw('p2.t0#1', 1_021, 101, 1)
      .release('p2.t0#1', 1_023)
      .serve('p1.t0#1', 2_000, 'write', 100, 1, false)
      .release('p1.t0#1', 2_001)
      .final(2_010, 1);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
    assert.equal(result.stats.rejectedStaleWrites, 1);
    assert.equal(result.stats.fencedOverlaps, 1);
  });

  test('belief ends where the client was told its validity ends, where loss is signalled, or at a crash', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 100, 1_000)
      .serve('p1.t0#1', 11, 'read', 100, 0)
      .acquire('p2.t0#1', 1_011, 101)
      .rmw('p2.t0#1', 1_012, 101, 1)
      .release('p2.t0#1', 1_014)
      .acquire('p3.t0#1', 1_020, 102, null)
      .serve('p3.t0#1', 1_021, 'read', 102, 1)
      .lost('p3.t0#1', 1_022)
      .acquire('p2.t0#2', 1_030, 103, null)
      .rmw('p2.t0#2', 1_031, 103, 2)
      .crash('p2', 1_033)
      .acquire('p1.t0#2', 1_040, 104)
      .rmw('p1.t0#2', 1_041, 104, 3)
      .release('p1.t0#2', 1_043)
      .serve('p1.t0#1', 1_500, 'write', 100, 1, false)
      .final(1_600, 3);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
    assert.equal(result.stats.fencedOverlaps, 0);
  });

  test('a renewal extends belief, so a grant inside the renewed lease is an overlap', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 100, 1_000)
      .extend('p1.t0#1', 300, 1_000)
      .serve('p1.t0#1', 1_100, 'read', 100, 0)
      .acquire('p2.t0#1', 1_050, 99)
      .serve('p2.t0#1', 1_060, 'read', 99, 0, false)
      .serve('p2.t0#1', 1_200, 'write', 101, 1);
    only(h.check(), 'overlap');
  });

  test('overlaps within the clock resolution (2 ms) are not flagged', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 100, 1_000)
      .rmw('p1.t0#1', 11, 100, 1)
      .acquire('p2.t0#1', 1_009, 101)
      .rmw('p2.t0#1', 1_009.5, 101, 2)
      .release('p2.t0#1', 1_011)
      .serve('p1.t0#1', 1_008.5, 'read', 100, 2, false)
      .final(1_020, 2);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
  });

  test('a write accepted after the writer stopped believing it held the lock still counts as holding', () => {
    // p1's lease lapsed and p2 read, yet the resource accepted p1's stale write (a broken fence check):
    // both were served while p1 effectively held the lock.
    const h = new History()
      .acquire('p1.t0#1', 10, 100, 1_000)
      .serve('p1.t0#1', 11, 'read', 100, 0)
      .acquire('p2.t0#1', 1_020, 101)
      .serve('p2.t0#1', 1_021, 'read', 101, 0)
      .serve('p1.t0#1', 1_022, 'write', 100, 1)
      .serve('p2.t0#1', 1_023, 'write', 101, 1)
      .release('p2.t0#1', 1_024)
      .final(1_030, 1);
    const result = h.check();
    const v = only(result, 'overlap');
    holds(v.window, served('p1.t0#1', 'write'), "p1's stale write");
    only(result, 'fence-order');
    only(result, 'lost-update');
  });

  test('a write sent after the lease ended and served before the next holder reads is a late op', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 100)
      .serve('p1.t0#1', 11, 'read', 100, 0)
      .lost('p1.t0#1', 1_000)
      .acquire('p2.t0#1', 1_003, 101)
      .serve('p1.t0#1', 1_005, 'write', 100, 1)
      .rmw('p2.t0#1', 1_007, 101, 2)
      .release('p2.t0#1', 1_009)
      .final(1_020, 2);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
    assert.equal(result.stats.lateOps, 1);
    assert.equal(result.stats.fencedOverlaps, 0);
  });

  test('a non-monotonic fence accepted by the resource', () => {
    const h = new History()
      .acquire('p1.t0#1', 10, 107)
      .rmw('p1.t0#1', 11, 107, 1)
      .release('p1.t0#1', 13)
      .acquire('p2.t0#1', 20, 105)
      .rmw('p2.t0#1', 21, 105, 2)
      .release('p2.t0#1', 23)
      .final(30, 2);
    const result = h.check();
    const v = result.violations.find((x) => x.kind === 'fence-order' && x.message.includes('resource accepted'));
    assert.ok(v, formatResult(result));
    holds(v.window, served('p1.t0#1', 'write'), 'the earlier, higher fence');
    holds(v.window, served('p2.t0#1', 'read'), 'the later, lower fence');
  });

  test('a grant that carries a fence no higher than an earlier grant', () => {
    // The resource never saw p2's fence (it did no op), so only the grant order can tell.
    const h = new History()
      .acquire('p1.t0#1', 10, 100)
      .rmw('p1.t0#1', 11, 100, 1)
      .release('p1.t0#1', 13)
      .acquire('p2.t0#1', 20, 100)
      .release('p2.t0#1', 21)
      .final(30, 1);
    const v = only(h.check(), 'fence-order');
    assert.match(v.message, /p2\.t0#1 asked for the lock after p1\.t0#1/);
    holds(v.window, (e) => e.op === 'acquire' && e.phase === 'ok' && e.session === 'p2.t0#1', "p2's grant");
    holds(v.window, (e) => e.op === 'acquire' && e.phase === 'ok' && e.session === 'p1.t0#1', "p1's grant");
  });

  test('a lost update: two writers stored the same successor', () => {
    // A duplicated fence lets both through the resource's check (it rejects only lower fences).
    const h = new History()
      .acquire('p1.t0#1', 10, 100)
      .serve('p1.t0#1', 11, 'read', 100, 0)
      .release('p1.t0#1', 12)
      .acquire('p2.t0#1', 13, 100)
      .serve('p2.t0#1', 14, 'read', 100, 0)
      .serve('p2.t0#1', 15, 'write', 100, 1)
      .release('p2.t0#1', 16)
      .serve('p1.t0#1', 17, 'write', 100, 1)
      .final(30, 1);
    const result = h.check();
    const v = result.violations.find((x) => x.kind === 'lost-update' && x.message.includes('overwritten'));
    assert.ok(v, formatResult(result));
    holds(v.window, served('p1.t0#1', 'write'), 'the overwriting write');
    holds(v.window, served('p2.t0#1', 'write'), 'the overwritten write');
    assert.ok(result.violations.some((x) => x.kind === 'lost-update' && x.message.includes('final value 1')));
  });

  test('a final value that disagrees with the accepted writes', () => {
    const h = new History().acquire('p1.t0#1', 10, 100).rmw('p1.t0#1', 11, 100, 1).release('p1.t0#1', 13).final(20, 0);
    const v = only(h.check(), 'lost-update');
    holds(v.window, (e) => e.op === 'final', 'the final value');
  });

  test('a liveness gap: the first grant after a heal comes later than the bound', () => {
    const h = new History(3_000)
      .acquire('p1.t0#1', 10, 100)
      .rmw('p1.t0#1', 11, 100, 1)
      .release('p1.t0#1', 13)
      .fault(20, 'start')
      .fault(1_000, 'heal')
      .acquire('p2.t0#1', 5_000, 101)
      .rmw('p2.t0#1', 5_001, 101, 2)
      .release('p2.t0#1', 5_003)
      .final(5_010, 2);
    const result = h.check();
    const v = only(result, 'liveness');
    assert.match(v.message, /4000\.0 ms later \(bound 3000 ms\)/);
    holds(v.window, (e) => e.op === 'fault' && e.phase === 'heal', 'the heal');
    holds(v.window, (e) => e.op === 'acquire' && e.phase === 'ok' && e.session === 'p2.t0#1', 'the late grant');
    assert.equal(result.stats.maxRecoveryMs, 4_000);
  });

  test('a liveness gap: nothing is granted after a heal at all', () => {
    const h = new History(3_000)
      .acquire('p1.t0#1', 10, 100)
      .rmw('p1.t0#1', 11, 100, 1)
      .release('p1.t0#1', 13)
      .fault(20, 'start')
      .fault(100, 'heal')
      .final(200, 1);
    const v = only(h.check(), 'liveness');
    assert.match(v.message, /no acquisition completed after/);
  });

  test('a grant within the bound after a heal passes', () => {
    const h = new History(3_000)
      .fault(5, 'start')
      .fault(8, 'heal')
      .acquire('p1.t0#1', 2_000, 100)
      .rmw('p1.t0#1', 2_001, 100, 1)
      .release('p1.t0#1', 2_003)
      .final(2_010, 1);
    const result = h.check();
    assert.equal(result.ok, true, formatResult(result));
    assert.equal(result.stats.faults, 1);
  });
});
