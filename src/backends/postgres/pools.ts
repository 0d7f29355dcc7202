// Pool membership on PostgreSQL: one row per member in a table beside the fence sequence (logged:
// membership is configuration, it must survive a crash of the server). Each change is one statement
// in a transaction of its own that first takes the pool's transaction lock (keys.ts poolKey): a
// statement sees what was committed when it started, so two adds that ran side by side would each
// count the members without the other's and could together pass the pool's size. Under the lock, a
// change starts after the one before it committed, and sees it. One that can let a waiter in also
// sends the pool's wake-up, as a release does (sql.ts RELEASE): a NOTIFY of the pool's name key, only
// when a waiter has announced itself on the pool's wait key, delivered when the change commits.

import type { PoolStore } from '../shared/pools.js';
import { poolKey, waitKey } from './keys.js';
import { ensureSideTable, type SideTable } from './fence.js';

interface Queryable {
  query(config: { text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}
/** Runs `use` on a pool connection of its own for pool `name` (Sessions.using: bounded, guarded, destroyed on failure). */
type Using = <T>(name: string, use: (client: Queryable) => Promise<T>) => Promise<T>;

/** Serializes the changes of one pool until COMMIT: $1 the pool's poolKey (bigint). */
const SERIALIZE = `SELECT pg_advisory_xact_lock($1::bigint)`;

/** The table, made on first use by whoever gets there first ($ none). */
const CREATE = (table: string): string => `CREATE TABLE IF NOT EXISTS ${table} (
  pool text NOT NULL,
  member text NOT NULL,
  PRIMARY KEY (pool, member)
)`;

/** The wake-up of a pool, as an expression: $W its wait key (bigint), $N its name key as text. */
const WAKE = (w: string, n: string): string =>
  `CASE WHEN pg_try_advisory_lock(${w}::bigint) THEN pg_advisory_unlock(${w}::bigint) ELSE pg_notify('locksmith_wake', ${n}::text) IS NULL END`;

/**
 * Adds the members not in yet, unless the pool would then have more than $3. $1 the pool, $2 the
 * members (text[], distinct), $3 the most members, $4 the pool's name key as text, $5 its wait key.
 * One row: added (-1: nothing added, it would not fit), woke. Runs under SERIALIZE (see above).
 */
const ADD = (table: string): string => `WITH fresh AS (
  SELECT m FROM unnest($2::text[]) AS m WHERE NOT EXISTS (SELECT 1 FROM ${table} t WHERE t.pool = $1 AND t.member = m)
), fits AS (
  SELECT (SELECT count(*) FROM ${table} WHERE pool = $1) + (SELECT count(*) FROM fresh) <= $3::int AS ok
), ins AS (
  INSERT INTO ${table} (pool, member) SELECT $1, m FROM fresh, fits WHERE fits.ok ON CONFLICT DO NOTHING RETURNING 1
)
SELECT CASE WHEN (SELECT ok FROM fits) THEN (SELECT count(*) FROM ins)::int ELSE -1 END AS added,
  CASE WHEN (SELECT count(*) FROM ins) = 0 THEN false ELSE ${WAKE('$5', '$4')} END AS woke`;

/** Removes members: $1 the pool, $2 the members (text[]). One row: removed. */
const REMOVE = (table: string): string =>
  `WITH gone AS (DELETE FROM ${table} WHERE pool = $1 AND member = ANY($2::text[]) RETURNING 1) SELECT count(*)::int AS removed FROM gone`;

/**
 * Replaces every member and wakes the pool: $1 the pool, $2 the members (text[], distinct), $3 the
 * pool's name key as text, $4 its wait key. Both data-modifying parts run whether read or not.
 */
const ASSIGN = (table: string): string => `WITH gone AS (
  DELETE FROM ${table} WHERE pool = $1 AND member <> ALL($2::text[])
), ins AS (
  INSERT INTO ${table} (pool, member) SELECT $1, m FROM unnest($2::text[]) AS m ON CONFLICT DO NOTHING
)
SELECT ${WAKE('$4', '$3')} AS woke`;

/** The members: $1 the pool. */
const MEMBERS = (table: string): string => `SELECT member FROM ${table} WHERE pool = $1`;

/** Wakes a pool's waiters with no change: $1 its name key as text, $2 its wait key. */
const NOTIFY = `SELECT ${WAKE('$2', '$1')} AS woke`;

/** The pool store of a PostgreSQL backend; `keyOf` is the backend's advisory key of a name. */
export function postgresPools(pool: Queryable, side: SideTable, keyOf: (name: string) => bigint, using: Using): PoolStore {
  const table = side.quoted;
  let ready: Promise<void> | undefined;
  /** The table, made first if need be; one another role made would let it add members (fence.ts). */
  const made = (): Promise<void> =>
    (ready ??= ensureSideTable(pool, side, CREATE(table), 'the pool table', 'its members could be changed').catch((error: unknown) => {
      ready = undefined;
      throw error;
    }));
  /** The rows of a read of the table. */
  const q = async (text: string, values: unknown[]): Promise<Record<string, unknown>[]> => {
    await made();
    return (await pool.query({ text, values })).rows;
  };
  /** The rows of a change of pool `name`, in a transaction of its own under the pool's lock. */
  // A failure ends the connection (using() destroys it): never back to the pool mid-transaction.
  const change = async (name: string, text: string, values: unknown[]): Promise<Record<string, unknown>[]> => {
    await made();
    return using(name, async (client) => {
      await client.query({ text: 'BEGIN' });
      await client.query({ text: SERIALIZE, values: [String(poolKey(keyOf(name)))] });
      const rows = (await client.query({ text, values })).rows;
      await client.query({ text: 'COMMIT' });
      return rows;
    });
  };
  const keys = (name: string): [string, string] => {
    const k = keyOf(name);
    return [String(k), String(waitKey(k))];
  };
  return {
    async add(name, members, max) {
      const added = Number((await change(name, ADD(table), [name, members, max, ...keys(name)]))[0]?.added);
      return added < 0 ? null : added;
    },
    async remove(name, members) {
      return Number((await change(name, REMOVE(table), [name, members]))[0]?.removed);
    },
    async assign(name, members) {
      await change(name, ASSIGN(table), [name, members, ...keys(name)]);
    },
    async members(name) {
      return (await q(MEMBERS(table), [name])).map((r) => String(r.member));
    },
    async notify(name) {
      await pool.query({ text: NOTIFY, values: keys(name) });
    },
  };
}
