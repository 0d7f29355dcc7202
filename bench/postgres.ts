// PostgreSQL backend vs the raw advisory-lock calls, on a throw-away database of the machine's server.
// Every contender gets a pool of its own with the same settings (max 10), so one's idle connections
// never starve another's round.
//   A: sequential acquire+release on one key (raw: pg_try_advisory_lock + pg_advisory_unlock as
//      prepared statements on one connection kept checked out, the floor the issue sets), with this
//      process and the server processes of the bench's database on one CPU (pin.ts)
//   B: 64 concurrent workers, each on its own key, pool max 10 (raw: each acquire checks a connection
//      out of the pool and keeps it until its unlock, as a session lock must)
//   The fenced floor adds the fence (nextval) to the raw statements, the least a fenced grant sends.
//   C: 8 workers on one key, each holding it 1 ms: the release → next-acquire gap (raw polling floor:
//      each worker retries pg_try_advisory_lock with a 1–10 ms backoff on a connection of its own;
//      raw blocking: each worker waits in pg_advisory_lock, so the server hands the lock over)
// Run: npm run bench:postgres (builds first; the library is the built package, as users run it)

import type pg from 'pg';
import { Locksmith } from 'fencelock';
import { postgresBackend } from 'fencelock/postgres';
import { createDatabase } from '../test/support/postgres.js';
import { oneCpu } from './pin.js';
import { abcRow, alternating, handoff, table, type Take } from './stats.js';

const ROUNDS = 9;
// Per round. A round of A lasts about 50 ms on one CPU; shorter ones (600 pairs) measured the same
// build 3-4 % lower against the raw pair, with more spread.
const A_OPS = Math.round(Number(process.env.BENCH_A ?? 9_000) / ROUNDS);
const B_OPS = Math.round(Number(process.env.BENCH_B ?? 11_520) / ROUNDS / 64) * 64;
const C_OPS = Number(process.env.BENCH_C ?? 500);
const B_WORKERS = 64;
const POOL = { max: 10 };
const TTL = 30_000;

type Client = pg.PoolClient;

/** A raw lock's release: the unlock, then its connection goes back (to the pool, or to `free`). */
const unlocker = (c: Client, key: number, back: () => void) => async (): Promise<void> => {
  await c.query({ name: 'unlock', text: 'SELECT pg_advisory_unlock($1)', values: [key] });
  back();
};

/**
 * A raw contender: a try that yields a row when granted, retried with a 1–10 ms backoff (the peers'
 * way of waiting), or (`blocking`) one statement that waits on the server. A's single caller uses a
 * pinned connection; every other caller checks one out of the contender's pool.
 */
function raw(pool: pg.Pool, pinned: Client, name: string, text: string, key: (lock: string) => number, blocking = false): Take {
  return async (lock) => {
    const mine = lock === 'bench:a';
    const c = mine ? pinned : await pool.connect();
    const back = mine ? () => undefined : () => c.release();
    const k = key(lock);
    for (let delay = 1; ; delay = Math.min(delay * 2, 10)) {
      if ((await c.query({ name, text, values: [k] })).rows.length === 1 || blocking) return unlocker(c, k, back);
      await new Promise((r) => setTimeout(r, delay));
    }
  };
}

export async function benchPostgres(): Promise<{ rows: Record<string, string | number>[]; pinned: boolean }> {
  const db = await createDatabase();
  const [rawPool, fencedPool, oursPool] = [db.pool(POOL), db.pool(POOL), db.pool(POOL)];
  try {
    // Raw: a key per name as the library hashes it would cost the same; small integers are simpler.
    const rawKeys = new Map<string, number>();
    const rawKey = (name: string): number => {
      let k = rawKeys.get(name);
      if (k === undefined) rawKeys.set(name, (k = rawKeys.size + 1));
      return k;
    };
    const [rawPinned, fencedPinned] = await Promise.all([rawPool.connect(), fencedPool.connect()]);
    await rawPinned.query('CREATE UNLOGGED SEQUENCE IF NOT EXISTS bench_fence');
    const tryText = 'SELECT 1 AS ok WHERE pg_try_advisory_lock($1)';
    const fencedText = "SELECT nextval('bench_fence')::text AS v WHERE pg_try_advisory_lock($1)";
    const locks = new Locksmith(postgresBackend({ pool: oursPool }), { ttl: TTL, wait: 60_000 });
    // The server processes of this database's connections: the bench's own, nobody else's.
    const pinning = await oneCpu(
      async () =>
        (await rawPinned.query('SELECT pid FROM pg_stat_activity WHERE datname = current_database()')).rows.map(
          (r: { pid: number }) => r.pid,
        ),
      true,
    );
    const ours: Take = async (key) => {
      const lock = await locks.acquire(key);
      return () => lock.release();
    };

    const contenders: [string, Take, Take][] = [
      [
        'raw pg_try_advisory_lock + unlock (polling)',
        raw(rawPool, rawPinned, 'try', tryText, rawKey),
        raw(rawPool, rawPinned, 'try', tryText, rawKey),
      ],
      [
        'fenced floor: try + nextval',
        raw(fencedPool, fencedPinned, 'tryf', fencedText, rawKey),
        raw(fencedPool, fencedPinned, 'tryf', fencedText, rawKey),
      ],
      ['locksmith', ours, ours],
      [
        'raw pg_advisory_lock (server queue)',
        raw(rawPool, rawPinned, 'try', tryText, rawKey),
        raw(rawPool, rawPinned, 'lock', 'SELECT pg_advisory_lock($1)', rawKey, true),
      ],
    ];
    // A and B for the first three (the queueing raw row repeats the polling one there); C for all,
    // once each, after A and B (long and latency-bound).
    // A on one CPU (pin.ts), after 2000 pairs each: long enough for the optimizing compiler to have
    // compiled every contender's path.
    const ab = await alternating(
      contenders.slice(0, 3).map((c) => c[1]),
      { ops: A_OPS, warm: 2_000, pinning },
      { ops: B_OPS, workers: B_WORKERS },
      ROUNDS,
    );
    const rows: Record<string, string | number>[] = [];
    for (const [i, [name, , contended]] of contenders.entries()) {
      const c = await handoff(
        8,
        C_OPS,
        () => contended('bench:c'),
        () => new Promise((r) => setTimeout(r, 1)),
      );
      const row = abcRow(name, Math.min(i, 2), ab, B_WORKERS, c);
      if (i === 3) for (const col of Object.keys(row).filter((k) => k.startsWith('A ') || k.startsWith('B '))) row[col] = '–';
      rows.push(row);
    }
    await locks.close();
    rawPinned.release();
    fencedPinned.release();
    return { rows, pinned: pinning.pinned };
  } finally {
    await db.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rows, pinned } = await benchPostgres();
  console.log(pinned ? 'A on one CPU (bench/pin.ts)' : 'A unpinned (no taskset, or not allowed to pin the server)');
  console.log(table(rows));
}
