// A lock for the length of the caller's own transaction: pg_advisory_xact_lock, freed by the server
// at COMMIT or ROLLBACK, so nothing can leak it. It takes no connection of its own: it runs on the
// client that holds the transaction, in the middle of whatever the caller is doing there.

import { performance } from 'node:perf_hooks';
import { LockArgumentError, LockTimeoutError } from '../../errors.js';
import { checkKey, checkOptionNames, checkWait } from '../../options.js';
import { ensureSequence, fenceSequence, type FenceSequence } from './fence.js';
import { advisoryKey } from './keys.js';
import { STILL_HELD, TX_LOCK } from './sql.js';

export interface TransactionLockOptions {
  /** How long to wait for the lock, ms (default 10000; 0: try once; Infinity: no limit). */
  wait?: number;
  /** Take it shared (pg_advisory_xact_lock_shared): many shared holders, or one exclusive. */
  shared?: boolean;
  /** The fence sequence's schema, as postgresBackend's `schema` (default "public"). */
  schema?: string;
  /** The fence sequence of the backend this must agree with (default "locksmith_fence"). */
  sequence?: string;
  /** The name's advisory key, as postgresBackend's `key` option (default `advisoryKey`). */
  key?: (name: string) => bigint;
}

export interface TransactionLock {
  key: string;
  /** The advisory key locked. */
  advisoryKey: bigint;
  /** Strictly increasing, in one sequence with postgresBackend's fences (same `schema` and `sequence`). */
  fence: bigint;
}

interface Queryable {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Fence sequences seen to exist (committed) and owned by us, by this process. */
const known = new Set<string>();
/** Sequences this process created inside a caller's transaction, by the session (client) that did. */
const creators = new Map<string, WeakRef<object>>();

/**
 * The sequence exists and is ours (checked until it is surely committed); created in the caller's
 * transaction if not. Created there, it is invisible to every other session until that transaction
 * commits (and gone if it rolls back), so it is cached only once a session other than its creator's
 * sees it: a concurrent transaction that skipped the check would fail on a relation it cannot see.
 */
async function sequenceReady(q: Queryable, seq: FenceSequence): Promise<void> {
  if (known.has(seq.regclass)) return;
  if (await ensureSequence(q, seq, true)) {
    creators.set(seq.regclass, new WeakRef(q));
  } else if (creators.get(seq.regclass)?.deref() !== q) {
    known.add(seq.regclass);
    creators.delete(seq.regclass);
  }
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
  const o = checkOptionNames(options, ['wait', 'shared', 'schema', 'sequence', 'key'], 'withTransactionLock()');
  const wait = o.wait === undefined ? 10_000 : checkWait(o.wait, key);
  if (o.shared !== undefined && typeof o.shared !== 'boolean')
    throw new LockArgumentError('withTransactionLock(): shared must be a boolean', { key });
  if (o.key !== undefined && typeof o.key !== 'function')
    throw new LockArgumentError('withTransactionLock(): key must be a function', { key });
  const seq = fenceSequence('withTransactionLock()', o.schema, o.sequence);
  const k: unknown = o.key ? (o.key as (name: string) => unknown)(key) : advisoryKey(key);
  if (typeof k !== 'bigint' || BigInt.asIntN(64, k) !== k)
    throw new LockArgumentError('withTransactionLock(): key() must return a signed 64-bit bigint', { key });
  // lock_timeout 0 means no limit to PostgreSQL; "try once" is its shortest, 1 ms.
  const timeout = wait === Infinity ? '0' : String(Math.max(1, wait));
  const q = client as Queryable;
  await sequenceReady(q, seq);
  const started = performance.now();
  let rows: Record<string, unknown>[];
  try {
    rows = (await q.query({ name: TX_LOCK.name, text: TX_LOCK.text, values: [String(k), timeout, seq.regclass, o.shared === true] })).rows;
  } catch (error) {
    if ((error as { code?: string }).code === '42P01') known.delete(seq.regclass);
    if ((error as { code?: string }).code === '55P03') {
      const waited = Math.round(performance.now() - started);
      throw new LockTimeoutError(`"${key}" was still held by another transaction after waiting ${waited} ms`, {
        key,
        waited,
        cause: error,
      });
    }
    throw error;
  }
  const row = rows[0];
  if (!row || (await q.query({ name: STILL_HELD.name, text: STILL_HELD.text, values: [String(k)] })).rows[0]?.held !== true) {
    throw new LockArgumentError(
      'withTransactionLock(): the client is not in a transaction (call BEGIN first): the lock would have ended with its own statement',
      { key },
    );
  }
  return fn({ key, advisoryKey: k, fence: BigInt(String(row.fence)) });
}
