// Rate-limiter buckets on PostgreSQL: GCRA (backends/shared/gcra.ts) in one statement on an UNLOGGED
// table, on the server's clock, one round trip per take. The upsert locks the bucket's row, so
// concurrent takes on one bucket are serialized by the server; takes on different buckets never wait.
// A bucket that is full again is garbage: every SWEEP_EVERY-th take of a backend also deletes those.

import { gcra, type RateDecision, type RateRequest, type RateStore } from '../shared/gcra.js';
import { ensureSideTable, type SideTable } from './fence.js';

interface Queryable {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}

/** The table, made on first use by whoever gets there first ($ none). */
const CREATE = (table: string): string => `CREATE UNLOGGED TABLE IF NOT EXISTS ${table} (
  key text PRIMARY KEY,
  tat double precision NOT NULL,
  allowed boolean NOT NULL
)`;

/**
 * One GCRA step: $1 the bucket's key, $2 T (ms per token), $3 the tolerance τ = burst × T (ms),
 * $4 cost. A new bucket takes `cost` at once (cost ≤ burst). On an existing one, every SET expression
 * reads the old row: `allowed` records the decision, `tat` moves only when allowed. now is the
 * statement's start, one value however long the row lock took.
 */
const TAKE = (table: string): string => `INSERT INTO ${table} AS b (key, tat, allowed)
VALUES ($1, extract(epoch FROM statement_timestamp()) * 1000 + $2::float8 * $4::float8, true)
ON CONFLICT (key) DO UPDATE SET
  allowed = greatest(b.tat, extract(epoch FROM statement_timestamp()) * 1000) + $2::float8 * $4::float8
    - extract(epoch FROM statement_timestamp()) * 1000 <= $3::float8 + 1e-6,
  tat = CASE WHEN greatest(b.tat, extract(epoch FROM statement_timestamp()) * 1000) + $2::float8 * $4::float8
    - extract(epoch FROM statement_timestamp()) * 1000 <= $3::float8 + 1e-6
    THEN greatest(b.tat, extract(epoch FROM statement_timestamp()) * 1000) + $2::float8 * $4::float8 ELSE b.tat END
RETURNING b.tat, b.allowed, extract(epoch FROM statement_timestamp()) * 1000 AS now`;

/** A look without a take: $1 the bucket's key. */
const PEEK = (table: string): string =>
  `SELECT (SELECT tat FROM ${table} WHERE key = $1) AS tat, extract(epoch FROM clock_timestamp()) * 1000 AS now`;

/** Forgets a bucket: $1 its key. */
const RESET = (table: string): string => `DELETE FROM ${table} WHERE key = $1`;

/** Deletes the buckets that are full again ($ none). */
const SWEEP = (table: string): string => `DELETE FROM ${table} WHERE tat < extract(epoch FROM clock_timestamp()) * 1000`;

const SWEEP_EVERY = 256;
const EPSILON = 1e-6;

/** The decision, from the bucket's TAT after the step (`tat`) and whether the step took. */
function decide(r: RateRequest, now: number, tat: number, allowed: boolean): RateDecision {
  const t = r.interval / r.limit;
  const tolerance = t * r.burst;
  const base = Math.max(tat, now);
  return {
    allowed,
    remaining: Math.max(0, Math.floor((tolerance - (base - now)) / t + EPSILON)),
    retryAfter: allowed ? 0 : Math.max(1, Math.ceil(base + t * r.cost - tolerance - now)),
    resetAt: Math.ceil(base),
  };
}

export function postgresRate(pool: Queryable, side: SideTable): RateStore {
  const table = side.quoted;
  let ready: Promise<void> | undefined;
  let takes = 0;
  const created = (): Promise<void> =>
    // One another role made would let it lift any limit (fence.ts).
    (ready ??= ensureSideTable(pool, side, CREATE(table), 'the rate table', 'its buckets could be reset').catch((error: unknown) => {
      ready = undefined;
      throw error;
    }));
  return {
    async take(r) {
      await created();
      const t = r.interval / r.limit;
      if (r.peek) {
        // A look is one GCRA step that stores nothing: the shared function computes it.
        const row = (await pool.query({ text: PEEK(table), values: [r.key] })).rows[0]!;
        return gcra(row.tat === null ? undefined : Number(row.tat), Number(row.now), r).decision;
      }
      if (++takes % SWEEP_EVERY === 0) void pool.query({ text: SWEEP(table) }).catch(() => undefined);
      const row = (await pool.query({ text: TAKE(table), values: [r.key, t, t * r.burst, r.cost] })).rows[0]!;
      return decide(r, Number(row.now), Number(row.tat), row.allowed === true);
    },
    async reset(key) {
      await created();
      await pool.query({ text: RESET(table), values: [key] });
    },
  };
}
