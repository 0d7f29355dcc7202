// A lock for the length of the caller's own transaction: pg_advisory_xact_lock, freed by the server
// at COMMIT or ROLLBACK, so nothing can leak it. It takes no connection of its own: it runs on the
// client that holds the transaction, in the middle of whatever the caller is doing there.

import { LockArgumentError, LockTimeoutError } from '../../errors.js';
import { checkKey, checkOptionNames, checkWait } from '../../options.js';
import { advisoryKey } from './keys.js';
import { quoteIdentifier } from './identifier.js';
import { nextFence, statements } from './sql.js';

export interface TransactionLockOptions {
  /** How long to wait for the lock, ms (default 10000; 0: try once; Infinity: no limit). */
  wait?: number;
  /** Take it shared (pg_advisory_xact_lock_shared): many shared holders, or one exclusive. */
  shared?: boolean;
  /** The fence sequence of the backend this must agree with (default "locksmith_fence"). */
  sequence?: string;
  /** The name's advisory key, as postgresBackend's `key` option (default `advisoryKey`). */
  key?: (name: string) => bigint;
}

export interface TransactionLock {
  key: string;
  /** The advisory key locked. */
  advisoryKey: bigint;
  /** Strictly increasing, in one sequence with postgresBackend's fences (same `sequence`). */
  fence: bigint;
}

interface Queryable {
  query(config: { text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Fence sequences seen to exist (committed) by this process. */
const known = new Set<string>();

/**
 * The lock, with lock_timeout for this statement only ($1 the advisory key, $2 lock_timeout, '0':
 * none), and a fence from the same sequence as postgresBackend's. nextval is not transactional: a
 * rollback keeps the bump, and concurrent transactions never wait for each other's.
 */
const take = (seq: string, fn: string): string => `WITH got AS MATERIALIZED (
  SELECT s.k, ${fn}(s.k) AS locked FROM (SELECT $1::bigint AS k, set_config('lock_timeout', $2::text, true) AS t) s
)
SELECT ${nextFence(seq)}::text AS fence FROM got`;

/**
 * Whether this session still holds the lock after the statement that took it: not so in autocommit,
 * where a transaction lock ends with its own statement. (No one-statement test tells a transaction
 * block from autocommit over the extended protocol.)
 */
const STILL_HELD = `SELECT count(*) > 0 AS held FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND pid = pg_backend_pid() AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid`;

/**
 * Creates the fence sequence inside the caller's transaction. Two transactions creating it at once:
 * the second waits for the first, then fails with a unique violation when it commits, which would
 * abort the caller's whole transaction. A savepoint confines that failure, and the sequence the first
 * one committed is there to use.
 */
async function createWithin(q: Queryable, seq: string): Promise<void> {
  await q.query({ text: 'SAVEPOINT locksmith_create_fence' });
  try {
    await q.query({ text: statements(seq).create });
  } catch (error) {
    await q.query({ text: 'ROLLBACK TO SAVEPOINT locksmith_create_fence' });
    const code = (error as { code?: string }).code;
    if (code !== '23505' && code !== '42P07') throw error; // unique_violation, duplicate_table: created meanwhile
  }
  await q.query({ text: 'RELEASE SAVEPOINT locksmith_create_fence' });
}

/**
 * Runs `fn` holding an advisory lock on `key` until the caller's transaction ends. Call it after
 * BEGIN on the transaction's client; the lock is released by COMMIT or ROLLBACK, not by this
 * function. Waiting happens on the server, bounded by `wait` through lock_timeout.
 */
export async function withTransactionLock<T>(
  client: unknown,
  key: string,
  fn: (lock: TransactionLock) => Promise<T> | T,
  options?: TransactionLockOptions,
): Promise<T> {
  checkKey(key);
  if (typeof client !== 'object' || client === null || typeof (client as Queryable).query !== 'function') {
    throw new LockArgumentError('withTransactionLock(): client must be a pg Client or PoolClient inside a transaction', { key });
  }
  if (typeof fn !== 'function') throw new LockArgumentError('withTransactionLock(): fn must be a function', { key });
  const o = checkOptionNames(options, ['wait', 'shared', 'sequence', 'key'], 'withTransactionLock()');
  const wait = o.wait === undefined ? 10_000 : checkWait(o.wait, key);
  if (o.shared !== undefined && typeof o.shared !== 'boolean') throw new LockArgumentError('withTransactionLock(): shared must be a boolean', { key });
  if (o.key !== undefined && typeof o.key !== 'function') throw new LockArgumentError('withTransactionLock(): key must be a function', { key });
  const seq = quoteIdentifier(o.sequence ?? 'locksmith_fence', 'withTransactionLock(): sequence');
  const k: unknown = o.key ? (o.key as (name: string) => unknown)(key) : advisoryKey(key);
  if (typeof k !== 'bigint' || BigInt.asIntN(64, k) !== k) throw new LockArgumentError('withTransactionLock(): key() must return a signed 64-bit bigint', { key });
  // lock_timeout 0 means no limit to PostgreSQL; "try once" is its shortest, 1 ms.
  const timeout = wait === Infinity ? '0' : String(Math.max(1, wait));
  const text = take(seq, o.shared === true ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock');
  const q = client as Queryable;
  if (!known.has(seq)) {
    const found = (await q.query({ text: 'SELECT to_regclass($1) IS NOT NULL AS ok', values: [seq] })).rows[0];
    // Created here, it is part of the caller's transaction (gone if that rolls back): not cached.
    if (found?.ok === true) known.add(seq);
    else await createWithin(q, seq);
  }
  const started = performance.now();
  let rows: Record<string, unknown>[];
  try {
    rows = (await q.query({ text, values: [String(k), timeout] })).rows;
  } catch (error) {
    if ((error as { code?: string }).code === '42P01') known.delete(seq);
    if ((error as { code?: string }).code === '55P03') {
      const waited = Math.round(performance.now() - started);
      throw new LockTimeoutError(`"${key}" was still held by another transaction after waiting ${waited} ms`, { key, waited, cause: error });
    }
    throw error;
  }
  const row = rows[0];
  if (!row || (await q.query({ text: STILL_HELD, values: [String(k)] })).rows[0]?.held !== true) {
    throw new LockArgumentError('withTransactionLock(): the client is not in a transaction (call BEGIN first): the lock would have ended with its own statement', { key });
  }
  return fn({ key, advisoryKey: k, fence: BigInt(String(row.fence)) });
}
