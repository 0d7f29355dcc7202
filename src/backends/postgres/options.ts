// The PostgreSQL backend's options, checked before anything is sent.

import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption } from '../shared/checks.js';
import { isPool, type PgPoolLike } from './client.js';
import { fenceSequence, type FenceSequence } from './fence.js';

export interface PostgresBackendOptions {
  /** A pg `Pool`. Never ended by us; we keep at most a quarter of it (1 to 4 connections) for locks, plus one while anything waits. */
  pool: unknown;
  /** The fence sequence's schema (default "public"); the backend creates the sequence there. */
  schema?: string;
  /** The fence sequence (default "locksmith_fence"), created on first use (UNLOGGED); refused when another role owns it. */
  sequence?: string;
  /**
   * The advisory key of a lock name (default: `advisoryKey`, a SHA-256 prefix). Give e.g.
   * `(name) => BigInt(name)` to share keys with code that calls pg_advisory_lock(42) itself.
   */
  key?: (name: string) => bigint;
  /** How long an acquire with no (or a longer) `wait` waits for a connection from the pool (default 5000 ms). */
  connectTimeout?: number;
}

export function checkOptions(options: PostgresBackendOptions): {
  pool: PgPoolLike;
  seq: FenceSequence;
  key: ((name: string) => bigint) | undefined;
  connectTimeout: number;
} {
  const o = checkOptionNames(options, ['pool', 'schema', 'sequence', 'key', 'connectTimeout'], 'postgresBackend()');
  if (!isPool(o.pool)) throw new LockArgumentError('postgresBackend(): pool must be a pg Pool');
  const seq = fenceSequence('postgresBackend()', o.schema, o.sequence);
  if (o.key !== undefined && typeof o.key !== 'function')
    throw new LockArgumentError('postgresBackend(): key must be a function from a lock name to a bigint');
  const key = o.key as ((name: string) => bigint) | undefined;
  const connectTimeout = msOption('postgresBackend()', 'connectTimeout', o.connectTimeout, 5_000, 1);
  return { pool: o.pool, seq, key, connectTimeout };
}
