// Every statement the PostgreSQL backend sends, written out whole. None is assembled at run time:
// the fence sequence travels as a parameter ($n::regclass, its quoted schema-qualified name), and
// the NOTIFY channel is a constant. Each comment names the statement's parameters.
//
// Fences come from one UNLOGGED sequence: no WAL to flush, no row to write. A crash resets an
// unlogged sequence to its start, so a value below the floor (2020-01-01 in µs) can only come from a
// reset sequence and is replaced by the server's clock in µs, which is above every fence handed out
// before as long as that clock does not step back across the crash.
//
// A grant computes its fence BEFORE it takes the lock: a session-level advisory lock survives the
// failure of the statement that took it, so nothing that can fail (a dropped sequence) may come after
// the lock. A refused try burns a sequence value, which costs nothing.
//
// Each lock granted carries a marker: a shared advisory lock in the two-int4 key space (objsubid 2)
// on (lock key XOR fence), split into its high and low halves. pg_locks then tells any session which
// fence each holder got (inspect), with no table written. The marker is taken after the lock in the
// same statement; a failure between them (the lock table full) ends the session (session.ts).
//
// Column lists are kept short on purpose: pg builds a parser and a property per result column.

/** One statement, with the name pg prepares it under on each connection. */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

const statement = (name: string, text: string): Statement => ({ name: `locksmith_${name}`, text });

/**
 * 2020-01-01 in µs: every fence is at or above it; a reset sequence's values are far below. A reset
 * one is set to the server clock in µs, under a transaction lock on a fixed key (-7308604897068083014)
 * and only if a fresh nextval taken under that lock is still below: two grants that both saw the reset
 * would otherwise each set the clock they read, and the later setval of the earlier clock would send
 * fences back (the safety suite's server-restart caught it).
 */
export const FENCE_FLOOR = 1_577_836_800_000_000n;

/** The channel releases notify on (payload: the name's advisory key in decimal); a constant identifier. */
export const CHANNEL = 'locksmith_wake';

/**
 * A grant of one lock without waiting, the statement on every lock's path. $1 the advisory key
 * (bigint), $2 the fence sequence (regclass text), $3 shared (boolean: a read) or exclusive. One row
 * (fence) when granted, none when refused. The fence comes first (a subquery the planner may neither
 * flatten nor push the filter into, OFFSET 0), then the filter: the try, and only when it took the
 * lock (CASE decides in order), the marker (void, cast to text: ''). It carries no reset guard (the
 * other grants' CASE on the floor, which cost the pair 2.7 µs of server time): the session sees a
 * fence below FENCE_FLOOR in the reply and sends REFENCE before anyone learns of it.
 */
export const GRANT = statement(
  'grant',
  `SELECT f.fence::text AS fence
FROM (SELECT nextval($2::regclass) AS fence OFFSET 0) f
WHERE CASE WHEN CASE WHEN $3::boolean THEN pg_try_advisory_lock_shared($1::bigint) ELSE pg_try_advisory_lock($1::bigint) END
  THEN pg_advisory_lock_shared((($1::bigint # f.fence) >> 32)::int4, (($1::bigint # f.fence) << 32 >> 32)::int4)::text = '' ELSE false END`,
);

/**
 * A new fence for a lock GRANT took with one from a reset sequence (below FENCE_FLOOR), and its
 * marker moved to it. The lock is held meanwhile, so no other grant of the key comes between; the
 * reset is the other grants' (under the transaction lock, only when a fresh nextval is still below).
 * $1 the advisory key (bigint), $2 the fence sequence (regclass text), $3 the fence GRANT gave
 * (bigint). One row (fence); none when the session held no marker for it.
 */
export const REFENCE = statement(
  'refence',
  `SELECT f.fence::text AS fence
FROM (SELECT CASE WHEN rs.v >= 1577836800000000 THEN rs.v ELSE setval($2::regclass, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) END AS fence
      FROM (SELECT nextval($2::regclass) AS v FROM (SELECT pg_advisory_xact_lock(-7308604897068083014) AS l) rl OFFSET 0) rs OFFSET 0) f
WHERE CASE WHEN pg_advisory_unlock_shared((($1::bigint # $3::bigint) >> 32)::int4, (($1::bigint # $3::bigint) << 32 >> 32)::int4)
  THEN pg_advisory_lock_shared((($1::bigint # f.fence) >> 32)::int4, (($1::bigint # f.fence) << 32 >> 32)::int4)::text = '' ELSE false END`,
);

/**
 * Several tries sent as one statement (requests that queued behind a statement in flight on the same
 * session). $1 the advisory keys (bigint[]), $2 per key whether shared (boolean[]), $3 the fence
 * sequence. One row (i: 1-based position, fence) per lock granted. Every lateral refers to the one
 * before it, so per key the fence comes first, then the try, then the marker.
 */
export const GRANT_BATCH = statement(
  'grant_b',
  `SELECT t.i::int AS i, g.fence::text AS fence
FROM unnest($1::bigint[], $2::boolean[]) WITH ORDINALITY AS t(k, s, i),
LATERAL (SELECT CASE WHEN n.v >= 1577836800000000 THEN n.v ELSE (SELECT CASE WHEN rs.v >= 1577836800000000 THEN rs.v ELSE setval($3::regclass, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) END FROM (SELECT nextval($3::regclass) AS v FROM (SELECT pg_advisory_xact_lock(-7308604897068083014) AS l) rl OFFSET 0) rs) END AS fence
         FROM (SELECT nextval($3::regclass) AS v, t.i OFFSET 0) n OFFSET 0) f,
LATERAL (SELECT f.fence WHERE CASE WHEN t.s THEN pg_try_advisory_lock_shared(t.k) ELSE pg_try_advisory_lock(t.k) END OFFSET 0) g,
LATERAL (SELECT pg_advisory_lock_shared(((t.k # g.fence) >> 32)::int4, ((t.k # g.fence) << 32 >> 32)::int4) OFFSET 0) m`,
);

/**
 * A read that gives way to announced writers (writer preference): refused while any session holds
 * the name's intent key (a waiting writer, wakeup.ts). pg_locks is the one exact test of that (a
 * probing try would refuse concurrent readers of each other), and only these reads pay for it.
 * $1 the advisory key, $2 its intent key, $3 the fence sequence. As GRANT.
 */
export const GRANT_SHARED_UNLESS_INTENT = statement(
  'grant_si',
  `SELECT g.fence::text AS fence
FROM (SELECT CASE WHEN n.v >= 1577836800000000 THEN n.v ELSE (SELECT CASE WHEN rs.v >= 1577836800000000 THEN rs.v ELSE setval($3::regclass, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) END FROM (SELECT nextval($3::regclass) AS v FROM (SELECT pg_advisory_xact_lock(-7308604897068083014) AS l) rl OFFSET 0) rs) END AS fence
      FROM (SELECT nextval($3::regclass) AS v OFFSET 0) n OFFSET 0) f,
LATERAL (SELECT f.fence WHERE CASE
  WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint) = $2::bigint) THEN false
  ELSE pg_try_advisory_lock_shared($1::bigint) END OFFSET 0) g,
LATERAL (SELECT pg_advisory_lock_shared((($1::bigint # g.fence) >> 32)::int4, (($1::bigint # g.fence) << 32 >> 32)::int4) OFFSET 0) m`,
);

/**
 * A semaphore permit: the first free slot key of $1 (bigint[], the slots this process does not hold
 * already, in order), taken exclusively; LIMIT 1 stops at the first one taken. $2 the fence sequence.
 * One row (k: the slot taken, fence) when granted.
 */
export const GRANT_PERMIT = statement(
  'grant_p',
  `SELECT g.k::text AS k, f.fence::text AS fence
FROM (SELECT CASE WHEN n.v >= 1577836800000000 THEN n.v ELSE (SELECT CASE WHEN rs.v >= 1577836800000000 THEN rs.v ELSE setval($2::regclass, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) END FROM (SELECT nextval($2::regclass) AS v FROM (SELECT pg_advisory_xact_lock(-7308604897068083014) AS l) rl OFFSET 0) rs) END AS fence
      FROM (SELECT nextval($2::regclass) AS v OFFSET 0) n OFFSET 0) f,
LATERAL (SELECT k FROM unnest($1::bigint[]) AS k WHERE f.fence IS NOT NULL AND pg_try_advisory_lock(k) LIMIT 1) g,
LATERAL (SELECT pg_advisory_lock_shared(((g.k # f.fence) >> 32)::int4, ((g.k # f.fence) << 32 >> 32)::int4) OFFSET 0) m`,
);

/**
 * The release of one lock: the unlock, then its marker and the wake-up. Waiters announce
 * themselves by holding the name's wait key shared (wakeup.ts); a try of it exclusively succeeds only
 * when nobody waits, and then nobody is notified. A NOTIFY costs the server a transaction id and a
 * commit, so releases nobody waits for send none. The probe runs after the unlock (the unlock is a
 * subquery the filter cannot be pushed into, OFFSET 0): a waiter that announced itself before its try
 * either saw the lock free or is notified. num_nonnulls() evaluates both of its arguments, always,
 * and is never negative: the filter keeps the row.
 * $1 the key locked, $2 shared (boolean), $3 the fence, $4 the name's key as text (the payload),
 * $5 the name's wait key. One row: ok, false when the session did not hold the lock.
 */
export const RELEASE = statement(
  'release',
  `SELECT u.ok
FROM (SELECT CASE WHEN $2::boolean THEN pg_advisory_unlock_shared($1::bigint) ELSE pg_advisory_unlock($1::bigint) END AS ok OFFSET 0) u
WHERE num_nonnulls(pg_advisory_unlock_shared((($1::bigint # $3::bigint) >> 32)::int4, (($1::bigint # $3::bigint) << 32 >> 32)::int4),
  CASE WHEN pg_try_advisory_lock($5::bigint) THEN pg_advisory_unlock($5::bigint) ELSE pg_notify('locksmith_wake', $4::text) IS NULL END) >= 0`,
);

/**
 * Several releases as one statement. $1 keys locked (bigint[]), $2 shared (boolean[]), $3 fences
 * (bigint[]), $4 the names' keys as text (text[]), $5 the names' wait keys (bigint[]). One row per
 * release (i: 1-based position, ok). Per release, in order: unlock, marker, wake-up (see RELEASE).
 */
export const RELEASE_BATCH = statement(
  'release_b',
  `SELECT t.i::int AS i, u.ok
FROM unnest($1::bigint[], $2::boolean[], $3::bigint[], $4::text[], $5::bigint[]) WITH ORDINALITY AS t(k, s, f, n, w, i),
LATERAL (SELECT CASE WHEN t.s THEN pg_advisory_unlock_shared(t.k) ELSE pg_advisory_unlock(t.k) END AS ok, t.i OFFSET 0) u,
LATERAL (SELECT pg_advisory_unlock_shared(((t.k # t.f) >> 32)::int4, ((t.k # t.f) << 32 >> 32)::int4), u.ok OFFSET 0) m,
LATERAL (SELECT CASE WHEN pg_try_advisory_lock(t.w) THEN pg_advisory_unlock(t.w)
  ELSE pg_notify('locksmith_wake', t.n) IS NULL END, m.ok OFFSET 0) w`,
);

/** Proves the session alive (and restarts its idle_session_timeout). No parameters. */
export const PING = statement('ping', `SELECT 1 AS ok`);

/**
 * Makes a pooled connection a lock session: reads the settings it came with (put back by RESTORE),
 * then names it after this backend instance (shown by inspect and to a DBA) and sets its
 * idle_session_timeout. $1 application_name, $2 idle_session_timeout (ms). One row: app, idle.
 */
export const OPEN_SESSION = statement(
  'open',
  `SELECT o.app, o.idle
FROM (SELECT current_setting('application_name') AS app, current_setting('idle_session_timeout') AS idle OFFSET 0) o,
LATERAL (SELECT set_config('application_name', $1::text, false), set_config('idle_session_timeout', $2::text, false), o.app OFFSET 0) s`,
);

/** Raises a session's idle_session_timeout for a lock with a longer ttl. $1 the timeout (ms). */
export const SET_IDLE = statement('idle', `SELECT set_config('idle_session_timeout', $1::text, false) AS idle`);

/** Puts back what OPEN_SESSION changed, before the connection goes back to the pool. $1 application_name, $2 idle_session_timeout. */
export const RESTORE = statement(
  'restore',
  `SELECT set_config('application_name', $1::text, false), set_config('idle_session_timeout', $2::text, false)`,
);

/** The wake-up connection's subscription (a constant channel: no identifier is ever spliced in). */
export const LISTEN = `LISTEN locksmith_wake`;

/**
 * A waiter's or a writer's announcement on the wake-up connection: its wait key or intent key, held
 * shared while it waits (see RELEASE and GRANT_SHARED_UNLESS_INTENT). $1 the key.
 */
export const ANNOUNCE = statement('announce', `SELECT pg_advisory_lock_shared($1::bigint)::text AS ok`);

/**
 * A message to every instance's wake-up connection on the channel (inspect's questions about owners
 * and their answers, inspect.ts). Sent only by inspect, so its transaction id costs nothing that
 * matters. $1 the payload.
 */
export const SAY = statement('say', `SELECT pg_notify('locksmith_wake', $1::text) IS NULL AS sent`);

/** Withdraws an ANNOUNCE. $1 the key. */
export const WITHDRAW = statement('withdraw', `SELECT pg_advisory_unlock_shared($1::bigint) AS ok`);

/**
 * The fence sequence's schema and name for CREATE_SEQUENCE (a DO block takes no parameters). Set for
 * the session, not the transaction: withTransactionLock may run it in autocommit, where a
 * transaction-local setting would be gone before the next statement. $1 schema, $2 sequence name
 * (plain identifiers, checked by the caller).
 */
export const NAME_SEQUENCE = `SELECT set_config('locksmith.schema', $1::text, false), set_config('locksmith.sequence', $2::text, false)`;

/** Creates the fence sequence named by NAME_SEQUENCE; format's %I quotes each identifier. No parameters. */
export const CREATE_SEQUENCE = `DO $$BEGIN
  EXECUTE format('CREATE UNLOGGED SEQUENCE IF NOT EXISTS %I.%I', current_setting('locksmith.schema'), current_setting('locksmith.sequence'));
END$$`;

/**
 * What a relation the backend makes is (kind: 'S' sequence, 'r' table) and whether the role we
 * connect as owns it: another role's fence sequence could be setval'd backwards by it, and its rate
 * or pool table written (a limit lifted, a member added). $1 schema, $2 name. One row (kind, mine)
 * when the relation exists.
 */
export const RELATION_OWNER = `SELECT c.relkind::text AS kind, c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS mine
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1::text AND c.relname = $2::text`;

/**
 * The holders of a name: every granted advisory lock on its key or on one of its slot keys, with the
 * holder's session name and, per marker that session holds, the fence it encodes. Markers are
 * matched by session and by plausibility (a fence between the floor and the sequence's last value);
 * a holder without one is another program's lock on the key.
 * $1 the name's key and slot keys (bigint[]), $2 the fence sequence.
 */
export const INSPECT = statement(
  'inspect',
  `WITH db AS (SELECT oid FROM pg_database WHERE datname = current_database()),
held AS (
  SELECT l.pid, l.mode, ((l.classid::bigint << 32) | l.objid::bigint) AS k FROM pg_locks l, db
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = db.oid
    AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY ($1::bigint[])),
marks AS (
  SELECT l.pid, ((l.classid::bigint << 32) | l.objid::bigint) AS v FROM pg_locks l, db
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.database = db.oid AND l.pid IN (SELECT pid FROM held))
SELECT h.pid, h.mode, h.k::text AS k, a.application_name AS app, (m.v # h.k)::text AS fence
FROM held h LEFT JOIN pg_stat_activity a ON a.pid = h.pid
LEFT JOIN marks m ON m.pid = h.pid AND (m.v # h.k) BETWEEN 1577836800000000 AND coalesce(pg_sequence_last_value($2::regclass), 0)`,
);

/**
 * withTransactionLock's lock: pg_advisory_xact_lock (or _shared) with lock_timeout for this statement
 * only, then a fence from the backend's sequence (after the lock: a transaction lock ends with a
 * failed statement's transaction, so nothing can be left behind). nextval is not transactional: a
 * rollback keeps the bump, and concurrent transactions never wait for each other's.
 * $1 the advisory key, $2 lock_timeout ('0': none), $3 the fence sequence, $4 shared (boolean).
 * One row: fence.
 */
export const TX_LOCK = statement(
  'tx',
  `WITH got AS MATERIALIZED (
  SELECT s.k, CASE WHEN $4::boolean THEN pg_advisory_xact_lock_shared(s.k)::text ELSE pg_advisory_xact_lock(s.k)::text END AS locked
  FROM (SELECT $1::bigint AS k, set_config('lock_timeout', $2::text, true) AS t) s)
SELECT (SELECT CASE WHEN n.v >= 1577836800000000 THEN n.v ELSE (SELECT CASE WHEN rs.v >= 1577836800000000 THEN rs.v ELSE setval($3::regclass, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) END FROM (SELECT nextval($3::regclass) AS v FROM (SELECT pg_advisory_xact_lock(-7308604897068083014) AS l) rl OFFSET 0) rs) END
        FROM (SELECT nextval($3::regclass) AS v) n)::text AS fence FROM got`,
);

/**
 * Whether this session still holds a lock on $1 after the statement that took it: not so in
 * autocommit, where a transaction lock ends with its own statement (no one-statement test tells a
 * transaction block from autocommit over the extended protocol). $1 the advisory key.
 */
export const STILL_HELD = statement(
  'tx_held',
  `SELECT count(*) > 0 AS held FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND pid = pg_backend_pid() AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid`,
);
