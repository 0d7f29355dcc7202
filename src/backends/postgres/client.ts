// What the backend uses of node-postgres, as structural types (pg stays an optional peer
// dependency), and how its failures are told apart.

import type { Statement } from './sql.js';

/** One row of a query result, as pg returns it. */
export type Row = Record<string, unknown>;

/** What we use of a pg `PoolClient`. */
export interface PgClientLike {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: Row[] }>;
  release(destroy?: boolean | Error): void;
  /** The server process of this session. */
  processID?: number | null;
  on(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
}

/** What we use of a pg `Pool`. */
export interface PgPoolLike {
  /** By callback (see checkout in sessions.ts), which pg-pool calls in the step that hands the client over. */
  connect(callback: (error: Error | undefined, client: PgClientLike | undefined) => void): void;
  options?: { max?: number };
  /** Callers waiting for a connection (pg-pool): an idle session goes back at once while there are any. */
  waitingCount?: number;
}

/** A pg Pool, not a single Client (whose connect() connects itself and yields no client). */
export function isPool(pool: unknown): pool is PgPoolLike {
  return typeof pool === 'object' && pool !== null && typeof (pool as PgPoolLike).connect === 'function' && 'idleCount' in pool;
}

/** Runs a named statement (prepared once per connection by pg). */
export function run(client: PgClientLike, statement: Statement, values: unknown[]): Promise<Row[]> {
  return client.query({ name: statement.name, text: statement.text, values }).then((r) => r.rows);
}

export const errorCode = (error: unknown): string => (error as { code?: string } | null)?.code ?? '';

/** The session is gone: terminated (57P01…), shut down, or the socket broke. */
export function isConnectionError(error: unknown): boolean {
  const code = errorCode(error);
  if (code.startsWith('57P') || code.startsWith('08')) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|ECONNRESET|EPIPE|not queryable|Client was closed|terminating connection/i.test(message);
}

/** The fence sequence does not exist (dropped, or a database restored without it). */
export const isMissingRelation = (error: unknown): boolean => errorCode(error) === '42P01';
