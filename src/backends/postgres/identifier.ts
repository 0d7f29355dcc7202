// The fence sequence's name: the one piece of text put into SQL, so it is validated and quoted here.

import { LockArgumentError } from '../../errors.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** `name` or `schema.name`, each part double-quoted (so its case is kept as written). */
export function quoteIdentifier(name: unknown, where: string): string {
  const parts = typeof name === 'string' ? name.split('.') : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    throw new LockArgumentError(`${where} must be an identifier or schema.identifier (letters, digits and _, at most 63 each)`);
  }
  return parts.map((p) => `"${p}"`).join('.');
}
