// The requests on every lock's path, as a session sends them: a batch of tries or of releases, as
// one statement (one of each kind for a single request), and what their rows say.

import { FENCE_FLOOR, GRANT, GRANT_BATCH, REFENCE, RELEASE, RELEASE_BATCH, type Statement } from './sql.js';
import type { Param, TextRow } from './lean.js';

/** Runs a statement on the session: rows as text (lean.ts). */
export type Runner = (statement: Statement, values: Param[]) => Promise<TextRow[]>;

export interface Waiting<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}
/** A try of `key` (as text); answered with the fence (as text) when granted. */
export interface Try extends Waiting<string | undefined> {
  kind: 'try';
  key: string;
  shared: boolean;
}
/**
 * The release of a lock; `name` and `wait` are the name's key and wait key, for the wake-up. Keys and
 * fences travel as text, as the statements take them: converted once per name, not per statement.
 */
export interface Unlock extends Waiting<boolean> {
  kind: 'unlock';
  key: string;
  shared: boolean;
  fence: string;
  name: string;
  wait: string;
}
/** A fence (digits, no leading zero) below FENCE_FLOOR: from a reset sequence. Same length: compared as text. */
const FLOOR = String(FENCE_FLOOR);
const belowFloor = (fence: string): boolean => fence.length < FLOOR.length || (fence.length === FLOOR.length && fence < FLOOR);

/** Told of each lock the server granted (+1) or released (-1) on the session, as soon as its rows say so. */
export type Taken = (change: number) => void;

/** Sends a batch of tries and settles each. */
export function sendTries(run: Runner, sequence: string, batch: Try[], taken: Taken): Promise<void> {
  if (batch.length === 1) {
    const t = batch[0]!;
    // One row (fence) when granted.
    return run(GRANT, [t.key, sequence, t.shared]).then((rows) => {
      const fence = rows[0]?.[0] ?? undefined;
      if (fence === undefined) return t.resolve(undefined);
      taken(1);
      if (belowFloor(fence)) return refence(run, sequence, t, fence);
      t.resolve(fence);
    });
  }
  // Rows (i, fence), one per lock granted.
  const values = [batch.map((t) => t.key), batch.map((t) => t.shared), sequence];
  return run(GRANT_BATCH, values).then((rows) => {
    taken(rows.length);
    const fences = new Map(rows.map((r) => [Number(r[0]), r[1] ?? undefined]));
    batch.forEach((t, i) => t.resolve(fences.get(i + 1)));
  });
}

/**
 * A grant's fence came from a reset sequence (a crash resets an unlogged one): it gets one from the
 * server's clock instead, before its caller learns of it (REFENCE). The lock is held either way, so
 * a failure here, whatever it is, ends the session and the lock with it.
 */
function refence(run: Runner, sequence: string, t: Try, low: string): Promise<void> {
  return run(REFENCE, [t.key, sequence, low]).then(
    (rows) => {
      const fence = rows[0]?.[0];
      if (!fence || belowFloor(fence)) throw new Error(`the fence of a reset sequence could not be replaced (got ${fence ?? 'no row'})`);
      t.resolve(fence);
    },
    (error: unknown) => {
      throw new Error('the fence of a reset sequence could not be replaced', { cause: error });
    },
  );
}

/** Sends a batch of releases and settles each. */
export function sendUnlocks(run: Runner, batch: Unlock[], taken: Taken): Promise<void> {
  if (batch.length === 1) {
    const u = batch[0]!;
    // One row (ok).
    return run(RELEASE, [u.key, u.shared, u.fence, u.name, u.wait]).then((rows) => {
      const ok = rows[0]?.[0] === 't';
      if (ok) taken(-1);
      u.resolve(ok);
    });
  }
  // Rows (i, ok), one per release.
  const column = <T extends string | boolean>(f: (u: Unlock) => T): T[] => batch.map(f);
  const values = [column((u) => u.key), column((u) => u.shared), column((u) => u.fence), column((u) => u.name), column((u) => u.wait)];
  return run(RELEASE_BATCH, values).then((rows) => {
    const ok = new Map(rows.map((r) => [Number(r[0]), r[1] === 't']));
    for (const released of ok.values()) if (released) taken(-1);
    batch.forEach((u, i) => u.resolve(ok.get(i + 1) === true));
  });
}
