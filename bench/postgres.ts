// PostgreSQL backend vs the raw advisory-lock calls, on a throw-away database of the machine's server.
//   A: sequential acquire+release on one key (raw: pg_try_advisory_lock + pg_advisory_unlock as
//      prepared statements on one pinned connection, the floor the issue sets)
//   B: 16 concurrent workers, each on its own key (raw: one pinned connection per worker)
//   The fenced floor adds the fence (nextval) to the raw statements, the least a fenced grant sends.
//   C: 8 workers on one key, each holding it 1 ms: the release → next-acquire gap (raw: each worker
//      blocks in pg_advisory_lock on its own connection, so the server hands the lock over)
// Run: npm run bench:postgres (builds first; the library is the built package, as users run it)

import { Locksmith } from 'locksmith';
import { postgresBackend } from 'locksmith/postgres';
import { createDatabase } from '../test/support/postgres.js';
import { abcRow, alternating, handoff, table, type Take } from './stats.js';

const A_OPS = Number(process.env.BENCH_A ?? 3_000) / 5; // per round
const B_OPS = Number(process.env.BENCH_B ?? 3_200) / 5;
const C_OPS = Number(process.env.BENCH_C ?? 500);
const TTL = 30_000;

export async function benchPostgres(): Promise<Record<string, string | number>[]> {
  const db = await createDatabase();
  const pool = db.pool({ max: 24 });
  try {
    // Raw: a key per name as the library hashes it would cost the same; small integers are simpler.
    const rawKeys = new Map<string, number>();
    const rawKey = (name: string): number => {
      let k = rawKeys.get(name);
      if (k === undefined) rawKeys.set(name, (k = rawKeys.size + 1));
      return k;
    };
    const pinned = await Promise.all(Array.from({ length: 16 }, () => pool.connect()));
    const free = [...pinned];
    /** The lock's connection, given back at release. */
    const unlocker = (c: (typeof pinned)[number], key: number) => async (): Promise<void> => {
      await c.query({ name: 'unlock', text: 'SELECT pg_advisory_unlock($1)', values: [key] });
      free.push(c);
    };
    /** A try that yields a row when granted, retried with backoff (the peers' way of waiting). */
    const trying =
      (name: string, text: string): Take =>
      async (lock) => {
        const c = free.pop()!;
        const key = rawKey(lock);
        for (let delay = 1; ; delay = Math.min(delay * 2, 10)) {
          if ((await c.query({ name, text, values: [key] })).rows.length === 1) return unlocker(c, key);
          await new Promise((r) => setTimeout(r, delay));
        }
      };
    /** A wait on the server, which hands the lock over at release. */
    const blocking =
      (name: string, text: string): Take =>
      async (lock) => {
        const c = free.pop()!;
        const key = rawKey(lock);
        await c.query({ name, text, values: [key] });
        return unlocker(c, key);
      };
    const rawTake = trying('try', 'SELECT 1 AS ok WHERE pg_try_advisory_lock($1)');
    const rawBlocking = blocking('lock', 'SELECT pg_advisory_lock($1)');
    // The fenced floor: the fence (nextval) in the grant's own statement, as the issue asks.
    await pinned[0]!.query('CREATE UNLOGGED SEQUENCE IF NOT EXISTS bench_fence');
    const fencedTake = trying('tryf', "SELECT nextval('bench_fence')::text AS v WHERE pg_try_advisory_lock($1)");
    const fencedBlocking = blocking('lockf', "SELECT nextval('bench_fence')::text AS v FROM (SELECT pg_advisory_lock($1)) l");
    const locks = new Locksmith(postgresBackend({ pool }), { ttl: TTL, wait: 60_000 });
    const ours: Take = async (key) => {
      const lock = await locks.acquire(key);
      return () => lock.release();
    };

    const contenders: [string, Take, Take][] = [
      ['raw pg_try_advisory_lock + unlock', rawTake, rawBlocking],
      ['fenced floor: try + nextval', fencedTake, fencedBlocking],
      ['locksmith', ours, ours],
    ];
    // C (long, latency-bound) runs once each, after A and B.
    const ab = await alternating(contenders.map((c) => c[1]), { ops: A_OPS }, { ops: B_OPS, workers: 16 });
    const rows: Record<string, string | number>[] = [];
    for (const [i, [name, , contended]] of contenders.entries()) {
      const c = await handoff(8, C_OPS, () => contended('bench:c'), () => new Promise((r) => setTimeout(r, 1)));
      rows.push(abcRow(name, i, ab, 16, c));
    }
    await locks.close();
    for (const c of pinned) c.release();
    return rows;
  } finally {
    await db.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(table(await benchPostgres()));
}
