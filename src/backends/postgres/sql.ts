// One SQL statement per verb. Each runs as a named (prepared) statement on the connection that holds
// the lock, so a grant or a release is one round trip. The only text put into SQL is the fence
// table's name, validated and quoted once (identifiers cannot be parameters); names, owners and
// durations always travel as parameters.
//
// The fence table has one row per lock name (its advisory key):
//   fence    the last fence handed out for the name. Each grant sets it to
//            GREATEST(fence + 1, the server clock in µs): strictly increasing while the row lives, and
//            still above every fence handed out before if the row is lost (the table is UNLOGGED, so a
//            crash empties it), as long as the server's clock does not step back.
//   holders  owner → [fence, backend pid, advisory key held, mode, ttl ms], for inspect. An entry is
//            believed only while pg_locks shows that pid holding that key in that mode: a holder
//            that crashed or was terminated leaves an entry that no longer matches. Exclusive
//            releases leave theirs (the next exclusive grant on the key replaces it); shared
//            releases remove theirs, since the same connection may soon hold the key shared again.
//   modes    e: exclusive on the name's key; s: shared on it; p: a semaphore permit, held as an
//            exclusive lock on one of the name's slot keys.
//
// A session-level advisory lock survives the failure of the statement that took it (a rollback
// does not release it), so any error in a grant ends the connection: the server then frees it.

import { createTable } from './table.js';

/** A fence from the server's clock, in µs since the epoch. */
export const CLOCK = `(extract(epoch FROM clock_timestamp()) * 1000000)::bigint`;

/** The holder entry for this grant; `fence` is the expression of the fence being handed out. */
const entry = (fence: string): string => `jsonb_build_array((${fence})::text, pg_backend_pid(), (SELECT k FROM got)::text, $5::text, $4::int)`;

/**
 * The grant: take the lock (`take`, a query yielding the key obtained as `k`, or no row), then in the
 * same statement bump the name's fence and record the holder. `holders` is the new holders object,
 * given the row as `f` and the new entry as `new_entry`. `after` is what RETURNING adds.
 * Parameters: $1 keys to try, in order; $2 the name's key; $3 owner; $4 ttl ms; $5 mode (e, s, p).
 */
function grant(table: string, take: string, holders: (newEntry: string) => string, after: string): string {
  const next = `GREATEST(f.fence + 1, EXCLUDED.fence)`;
  return `WITH got AS MATERIALIZED (${take})
INSERT INTO ${table} AS f (key, fence, holders)
SELECT $2::bigint, now_us.v, jsonb_build_object($3::text, ${entry('now_us.v')}) FROM got, (SELECT ${CLOCK} AS v) now_us
ON CONFLICT (key) DO UPDATE SET fence = ${next}, holders = ${holders(`jsonb_build_object($3::text, ${entry(next)})`)}
RETURNING f.fence::text AS fence, (SELECT k FROM got)::text AS k, current_setting('idle_session_timeout') AS before${after}`;
}

/**
 * The first key of $1 that is free, taken without waiting. LIMIT 1 stops the scan at the first lock
 * taken, so a semaphore takes at most one slot, trying them in order.
 */
const tryTake = (fn: string): string => `SELECT k FROM unnest($1::bigint[]) AS k WHERE ${fn}(k) LIMIT 1`;

/**
 * Waits on the server for the one key in $1 (the server queues waiters in order and grants at
 * release, with no round trip of the waiter's). lock_timeout ($6) bounds the wait in case the client
 * never withdraws it; client_connection_check_interval ($7) lets the server notice within that time
 * that a withdrawn waiter's connection was closed, and leave the queue. Both only for this statement.
 */
const waitTake = (fn: string): string =>
  `SELECT s.k, ${fn}(s.k) AS locked FROM (SELECT ($1::bigint[])[1] AS k, set_config('lock_timeout', $6::text, true) AS t, set_config('client_connection_check_interval', $7::text, true) AS c) s`;

/** Exclusive grants drop entries left on the same key: whoever held it is gone now. */
const replaceOnKey = (newEntry: string): string =>
  `(SELECT coalesce(jsonb_object_agg(h.key, h.value), '{}'::jsonb) FROM jsonb_each(f.holders) h WHERE h.value->>2 <> (SELECT k FROM got)::text) || ${newEntry}`;
const addShared = (newEntry: string): string => `f.holders || ${newEntry}`;

/**
 * The lease's server-side ttl: idle_session_timeout ends the session, and so frees its locks, when it
 * stays idle that long. Every statement on the connection restarts it; extend is such a statement.
 * A try sets it in the grant itself. A server-side wait does not (its grant may sit unread for a
 * while): the caller sets it when it takes the grant, counting its validity from before that.
 */
const SET_TTL = `, set_config('idle_session_timeout', $4::text, false) AS ttl`;

export interface Statements {
  /** Exclusive (a plain lock or a read-write writer) or a semaphore permit (one of the slot keys). */
  tryExclusive: string;
  tryShared: string;
  waitExclusive: string;
  waitShared: string;
  /** $1 name key, $2 owner, $3 ttl ms, $4 owner recorded: the liveness check that renews the lease. */
  extend: string;
  /** $1 key held, $2 idle_session_timeout to restore. */
  releaseExclusive: string;
  /** As releaseExclusive, then wakes waiters that listen ($3 channel, $4 payload: the name's key). */
  releaseExclusiveNotify: string;
  /** $1 key held, $2 idle_session_timeout to restore, $3 name key, $4 owner, $5 channel. */
  releaseShared: string;
  /** $1 name key, $2 its high 32 bits, $3 its low 32 bits. */
  inspect: string;
  create: string;
}

export function statements(table: string): Statements {
  return {
    tryExclusive: grant(table, tryTake('pg_try_advisory_lock'), replaceOnKey, SET_TTL),
    tryShared: grant(table, tryTake('pg_try_advisory_lock_shared'), addShared, SET_TTL),
    waitExclusive: grant(table, waitTake('pg_advisory_lock'), replaceOnKey, ''),
    waitShared: grant(table, waitTake('pg_advisory_lock_shared'), addShared, ''),
    // The holder's entry may have been recorded under another owner of this process (see the
    // shared exclusive wait in index.ts): it is renamed to the owner renewing it.
    extend: `WITH upd AS (UPDATE ${table} SET holders = (holders - $4::text) || jsonb_build_object($2::text, jsonb_set(holders->$4::text, '{4}', to_jsonb($3::int)))
  WHERE key = $1::bigint AND holders ? $4::text)
SELECT set_config('idle_session_timeout', $3::text, false) AS ttl`,
    releaseExclusive: `SELECT pg_advisory_unlock($1::bigint) AS ok, set_config('idle_session_timeout', $2::text, false) AS ttl`,
    releaseExclusiveNotify: `SELECT pg_advisory_unlock($1::bigint) AS ok, set_config('idle_session_timeout', $2::text, false) AS ttl, pg_notify($3::text, $4::text)::text AS woke`,
    releaseShared: `WITH u AS MATERIALIZED (SELECT pg_advisory_unlock_shared($1::bigint) AS ok),
  d AS (UPDATE ${table} SET holders = holders - $4::text WHERE key = $3::bigint AND (SELECT ok FROM u))
SELECT ok, set_config('idle_session_timeout', $2::text, false) AS ttl, pg_notify($5::text, $3::text)::text AS woke FROM u`,
    // Believed entries (matched by pg_locks), then holders of the name's key that Locksmith did not
    // grant: another program's advisory lock on the same key, shown as "pid:<pid>" with fence 0.
    inspect: `WITH locks AS MATERIALIZED (
  SELECT l.pid, l.mode, (l.classid::bigint << 32) | l.objid::bigint AS k FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
), mine AS (
  SELECT h.key AS owner, h.value->>0 AS fence, h.value->>3 AS mode, (h.value->>4)::bigint AS ttl, (h.value->>1)::int AS pid, (h.value->>2)::bigint AS k
  FROM ${table} f, jsonb_each(f.holders) h WHERE f.key = $1::bigint
), believed AS (
  SELECT m.* FROM mine m JOIN locks l ON l.pid = m.pid AND l.k = m.k AND l.mode = CASE m.mode WHEN 's' THEN 'ShareLock' ELSE 'ExclusiveLock' END
)
SELECT b.owner, b.fence, b.mode, b.ttl, a.state, (extract(epoch FROM a.state_change) * 1000)::float8 AS since
FROM believed b LEFT JOIN pg_stat_activity a ON a.pid = b.pid
UNION ALL
SELECT 'pid:' || l.pid, '0', CASE l.mode WHEN 'ShareLock' THEN 's' ELSE 'e' END, NULL, NULL, NULL
FROM locks l WHERE l.k = $1::bigint AND NOT EXISTS (SELECT 1 FROM believed b WHERE b.pid = l.pid AND b.k = l.k)`,
    create: createTable(table),
  };
}
