// The fence table's name: the one piece of text put into SQL, so it is validated and quoted here.

import { LockArgumentError } from '../../errors.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** `table` or `schema.table`, each part double-quoted (so its case is kept as written). */
export function quoteTable(table: unknown, where: string): string {
  const parts = typeof table === 'string' ? table.split('.') : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    throw new LockArgumentError(`${where}: table must be an identifier or schema.identifier (letters, digits and _, at most 63 each)`);
  }
  return parts.map((p) => `"${p}"`).join('.');
}

/** See sql.ts for what the columns hold. UNLOGGED: no WAL flush per grant; a crash empties it. */
export const createTable = (quoted: string): string =>
  `CREATE UNLOGGED TABLE IF NOT EXISTS ${quoted} (key bigint PRIMARY KEY, fence bigint NOT NULL, holders jsonb NOT NULL DEFAULT '{}'::jsonb)`;
