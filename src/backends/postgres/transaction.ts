// A lock for the length of the caller's own transaction: pg_advisory_xact_lock, freed by the server
// at COMMIT or ROLLBACK, so nothing can leak it. It takes no connection of its own: it runs on the
// client that holds the transaction, in the middle of whatever the caller is doing there.

import { LockArgumentError, LockTimeoutError } from '../../errors.js';
import { checkKey, checkOptionNames, checkWait } from '../../options.js';
import { advisoryKey } from './keys.js';
import { CLOCK } from './sql.js';
import { createTable, quoteTable } from './table.js';

export interface TransactionLockOptions {
  /** How long to wait for the lock, ms (default 10000; 0: try once; Infinity: no limit). */
  wait?: number;
  /** Take it shared (pg_advisory_xact_lock_shared): many shared holders, or one exclusive. */
  shared?: boolean;
  /** The fence table of the backend this must agree with (default "locksmith_fences"). */
  table?: string;
  /** The name's advisory key, as postgresBackend's `key` option (default `advisoryKey`). */
  key?: (name: string) => bigint;
}

export interface TransactionLock {
  key: string;
  /** The advisory key locked. */
  advisoryKey: bigint;
  /**
   * Exclusive: strictly increasing per name, in one sequence with postgresBackend's fences for the
   * same table. Shared: the current fence (the last exclusive holder's), not a new one.
   */
  fence: bigint;
}

interface Queryable {
  query(config: { text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Fence tables seen to exist (committed) by this process. */
const known = new Set<string>();

/** The lock, with lock_timeout for this statement only: $1 the advisory key, $2 lock_timeout ('0': none). */
const locked = (fn: string): string =>
  `SELECT s.k, ${fn}(s.k) AS locked FROM (SELECT $1::bigint AS k, set_config('lock_timeout', $2::text, true) AS t) s`;

/**
 * An exclusive holder bumps the fence in the caller's transaction: a rollback undoes the bump, which
 * is harmless, as the rolled-back holder's writes are undone too (and the next fence comes from the
 * clock anyway). Its row lock lasts until the transaction ends, as the advisory lock does.
 */
const takeExclusive = (table: string): string => `WITH got AS MATERIALIZED (${locked('pg_advisory_xact_lock')})
INSERT INTO ${table} AS f (key, fence) SELECT k, ${CLOCK} FROM got
ON CONFLICT (key) DO UPDATE SET fence = GREATEST(f.fence + 1, EXCLUDED.fence)
RETURNING f.fence::text AS fence`;

/**
 * Shared holders only read the fence (the last exclusive holder's): a bump would lock the row until
 * COMMIT and so serialize the readers. Readers must not write what the fence protects.
 */
const takeShared = (table: string): string => `WITH got AS MATERIALIZED (${locked('pg_advisory_xact_lock_shared')})
SELECT coalesce((SELECT f.fence FROM ${table} f, got WHERE f.key = got.k), 0)::text AS fence FROM got`;

/**
 * Whether this session still holds the lock after the statement that took it: not so in autocommit,
 * where a transaction lock ends with its own statement. (No one-statement test tells a transaction
 * block from autocommit over the extended protocol.)
 */
const STILL_HELD = `SELECT count(*) > 0 AS held FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND pid = pg_backend_pid() AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid`;

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
  const o = checkOptionNames(options, ['wait', 'shared', 'table', 'key'], 'withTransactionLock()');
  const wait = o.wait === undefined ? 10_000 : checkWait(o.wait, key);
  if (o.shared !== undefined && typeof o.shared !== 'boolean') throw new LockArgumentError('withTransactionLock(): shared must be a boolean', { key });
  if (o.key !== undefined && typeof o.key !== 'function') throw new LockArgumentError('withTransactionLock(): key must be a function', { key });
  const table = quoteTable(o.table ?? 'locksmith_fences', 'withTransactionLock()');
  const k: unknown = o.key ? (o.key as (name: string) => unknown)(key) : advisoryKey(key);
  if (typeof k !== 'bigint' || BigInt.asIntN(64, k) !== k) throw new LockArgumentError('withTransactionLock(): key() must return a signed 64-bit bigint', { key });
  // lock_timeout 0 means no limit to PostgreSQL; "try once" is its shortest, 1 ms.
  const timeout = wait === Infinity ? '0' : String(Math.max(1, wait));
  const text = o.shared === true ? takeShared(table) : takeExclusive(table);
  const q = client as Queryable;
  if (!known.has(table)) {
    const found = (await q.query({ text: 'SELECT to_regclass($1) IS NOT NULL AS ok', values: [table] })).rows[0];
    // Created here, the table is part of the caller's transaction (gone if it rolls back): not cached.
    if (found?.ok === true) known.add(table);
    else await q.query({ text: createTable(table) });
  }
  const started = performance.now();
  let rows: Record<string, unknown>[];
  try {
    rows = (await q.query({ text, values: [String(k), timeout] })).rows;
  } catch (error) {
    if ((error as { code?: string }).code === '42P01') known.delete(table);
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
