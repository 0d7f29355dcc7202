// One SQL statement per verb. Each runs as a named (prepared) statement on the connection that holds
// the lock, so a grant or a release is one round trip, and none of them writes a table: a grant
// costs the server little more than pg_try_advisory_lock itself. The only text put into SQL is the
// fence sequence's name, validated and quoted once (identifiers cannot be parameters); names, owners
// and durations always travel as parameters.
//
// Fences come from one UNLOGGED sequence, bumped in the grant: strictly increasing per key (and
// across keys) while the server runs, with no WAL to flush and no table row to write. A crash resets
// an unlogged sequence to its start, so the sequence starts from the server's clock in µs: a value
// below FENCE_FLOOR (the clock in 2020) can only come from a reset sequence, and is replaced by the
// clock, which is above every fence handed out before as long as the server's clock does not step
// back across the crash (each grant takes far more than a µs, so the count never outruns the clock).
// The first grants after such a reset may share a fence if they reseed in the same µs.

// Who holds a lock is the session's application_name, set in the grant (and put back at release):
//   ls<mode>:<ttl hex>:<fence hex>:<owner>         e: exclusive, s: shared, on the name's key
//   lsp:<name key hex>:<ttl hex>:<fence hex>:<owner>  p: a semaphore permit, on one of its slot keys
// inspect joins pg_locks (what is held, by which backend pid) with pg_stat_activity (its name).
// A holder is believed only while pg_locks shows its session holding the lock, and a holder that
// crashed or was terminated has no session left; the name also shows holders to a DBA.
//
// A session-level advisory lock survives the failure of the statement that took it (a rollback does
// not release it), so any error in a grant ends the connection: the server then frees it.

/** The server's clock, in µs since the epoch. */
const CLOCK = `(extract(epoch FROM clock_timestamp()) * 1000000)::bigint`;

/** 2020-01-01 in µs: every fence is above it, and a reset sequence's values are far below. */
const FENCE_FLOOR = 1_577_836_800_000_000n;

/** The next fence (see above); `seq` is the quoted sequence name. */
export const nextFence = (seq: string): string =>
  `(SELECT CASE WHEN n.v >= ${FENCE_FLOOR} THEN n.v ELSE setval('${seq}', ${CLOCK}) END FROM (SELECT nextval('${seq}') AS v) n)`;

/**
 * A grant: `take` yields the key obtained as `k` (or no row: refused); then, in the same statement,
 * the fence and the session's name and, as needed, what to restore later (`read`: on a connection
 * fresh from the pool) and the server-side ttl (`ttl`: a try whose ttl the session lacks). Parameters:
 * $1 the key (or, for permits, the slot keys in order); $2 the session's name up to the fence; $3 ":"
 * + owner; $4 the ttl in ms (a try that sets it) or, for a wait, as in waitTake.
 */
function grant(seq: string, take: string, read: boolean, ttl: boolean, permit: boolean): string {
  // The settings go in a lateral row, not in the result: every column costs the client a parser and
  // a property per row (pg's result building was the largest part of an uncontended pair's cost).
  // OFFSET 0 keeps the planner from folding it away; it runs only for a lock taken.
  const settings = [
    // Read before the set_config calls after them: a select list is evaluated in order.
    ...(read ? [`current_setting('application_name') AS app`, `current_setting('idle_session_timeout') AS idle`] : []),
    `set_config('application_name', $2::text || to_hex(n.v) || $3::text, false) AS named`,
    ...(ttl ? [`set_config('idle_session_timeout', $4::text, false) AS ttl`] : []),
  ];
  // Only a permit's slot is news to the caller; a plain key is the one it sent.
  const columns = ['n.v::text AS fence', ...(permit ? ['n.k::text AS k'] : []), ...(read ? ['s.app', 's.idle'] : [])];
  // The fence in a subquery over the lock's: it runs only for a lock taken.
  return `SELECT ${columns.join(', ')} FROM (SELECT t.k, ${nextFence(seq)} AS v FROM (${take}) t) n, LATERAL (SELECT ${settings.join(', ')} OFFSET 0) s`;
}

/** The grants by kind: x, s, p (permit) tries, wx and ws waits; then r (read) and t (sets the ttl). */
export const grantKind = (take: 'x' | 's' | 'p' | 'wx' | 'ws', read: boolean, ttl: boolean): string => `${take}${read ? 'r' : ''}${ttl ? 't' : ''}`;

/**
 * The first key of $1 (an array) that is free, taken without waiting. LIMIT 1 stops the scan at the
 * first lock taken, so a semaphore takes at most one slot, trying them in order.
 */
const trySlots = `SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_lock(k) LIMIT 1`;
/** The one key $1, taken without waiting. */
const tryTake = (fn: string): string => `SELECT $1::bigint AS k WHERE ${fn}($1::bigint)`;

/**
 * Waits on the server for the one key $1 (the server queues waiters in order and grants at
 * release, with no round trip of the waiter's). lock_timeout ($4) bounds the wait in case the client
 * never withdraws it; client_connection_check_interval ($5) lets the server notice within that time
 * that a withdrawn waiter's connection was closed, and leave the queue. Both only for this statement.
 */
const waitTake = (fn: string): string =>
  `SELECT s.k, ${fn}(s.k) AS locked FROM (SELECT $1::bigint AS k, set_config('lock_timeout', $4::text, true) AS t, set_config('client_connection_check_interval', $5::text, true) AS c) s`;

/**
 * The lease's server-side ttl is idle_session_timeout: the server ends a session idle that long, and
 * so frees its locks. Every statement on the connection restarts it; extend is such a statement. A
 * try sets it in the grant itself. A server-side wait does not (its grant may sit unread for a
 * while): the caller sets it when it takes the grant, counting its validity from before that.
 */
export interface Statements {
  /**
   * By grantKind: tries of an exclusive lock (a plain lock or a read-write writer), a shared one, a
   * semaphore permit (the first free slot key); server-side waits, exclusive and shared.
   */
  grant: Record<string, string>;
  /** $1 ttl ms, $2 the session's name: the liveness check that renews the lease. */
  extend: string;
  /**
   * By kind: s (shared) or x (exclusive, permits too), then n (wakes waiters that listen), then r
   * (restores the session's settings for the pool; without it the connection stays ours, a spare).
   * $1 key held; then (r) idle_session_timeout and application_name to restore; then (n) the channel
   * and the payload, the name's key.
   */
  release: Record<string, string>;
  /** $1 idle_session_timeout, $2 application_name: a spare connection given back to the pool. */
  restore: string;
  /** $1 name key, $2 LIKE pattern of its permits' session names. */
  inspect: string;
  create: string;
}

/** See Statements.release. The unlock comes first: the lateral row after it does the rest. */
function release(shared: boolean, notify: boolean, restore: boolean): string {
  const after = [
    ...(restore ? [`set_config('idle_session_timeout', $2::text, false)`, `set_config('application_name', $3::text, false)`] : []),
    ...(notify ? [restore ? `pg_notify($4::text, $5::text)::text` : `pg_notify($2::text, $3::text)::text`] : []),
  ];
  const unlock = `SELECT ${shared ? 'pg_advisory_unlock_shared' : 'pg_advisory_unlock'}($1::bigint) AS ok`;
  return after.length ? `SELECT u.ok FROM (${unlock}) u, LATERAL (SELECT ${after.join(', ')} OFFSET 0) s` : unlock;
}

export const releaseKind = (shared: boolean, notify: boolean, restore: boolean): string => `${shared ? 's' : 'x'}${notify ? 'n' : ''}${restore ? 'r' : ''}`;

export function statements(seq: string): Statements {
  return {
    grant: Object.fromEntries(
      (
        [
          ['x', tryTake('pg_try_advisory_lock')],
          ['s', tryTake('pg_try_advisory_lock_shared')],
          ['p', trySlots],
          ['wx', waitTake('pg_advisory_lock')],
          ['ws', waitTake('pg_advisory_lock_shared')],
        ] as const
      ).flatMap(([take, sql]) =>
        [false, true].flatMap((read) =>
          // Waits never set the ttl (see above); $4 is theirs.
          (take.startsWith('w') ? [false] : [false, true]).map((ttl) => [grantKind(take, read, ttl), grant(seq, sql, read, ttl, take === 'p')]),
        ),
      ),
    ),
    extend: `SELECT 1 AS ok FROM (SELECT set_config('idle_session_timeout', $1::text, false), set_config('application_name', $2::text, false) OFFSET 0) s`,
    release: Object.fromEntries(
      [false, true].flatMap((shared) => [false, true].flatMap((notify) => [false, true].map((restore) => [releaseKind(shared, notify, restore), release(shared, notify, restore)]))),
    ),
    restore: `SELECT 1 AS ok FROM (SELECT set_config('idle_session_timeout', $1::text, false), set_config('application_name', $2::text, false) OFFSET 0) s`,
    // Every granted advisory lock on the name's key, and permits named after it, with their sessions'
    // names; a holder whose name is not ours is another program's lock on the same key.
    inspect: `SELECT l.pid, l.mode, a.application_name AS app, a.state, (extract(epoch FROM a.state_change) * 1000)::float8 AS since
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (((l.classid::bigint << 32) | l.objid::bigint) = $1::bigint OR a.application_name LIKE $2::text)`,
    // UNLOGGED: no WAL, so no flush to wait for; a crash resets it, which nextFence survives.
    create: `CREATE UNLOGGED SEQUENCE IF NOT EXISTS ${seq}`,
  };
}
