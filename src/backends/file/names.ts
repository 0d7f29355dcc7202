// Lock names as file names.

import { createHash } from 'node:crypto';
import { LockArgumentError } from '../../errors.js';
import { wellFormed } from '../../options.js';

/**
 * Refuses a name with a lone surrogate: UTF-8 cannot encode one, so it would become U+FFFD and
 * '\uD800' and '\uDBFF' would collapse into one lock.
 */
export function checkName(key: string): void {
  if (!wellFormed(key)) {
    throw new LockArgumentError('the file backend needs lock names that are well-formed UTF-16 (this one has a lone surrogate)', {
      key: key.slice(0, 64),
    });
  }
}

/** A file name for a lock name: safe on any filesystem, no path traversal, stable across processes. */
export function fileNameFor(key: string): string {
  checkName(key);
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `%${byte.toString(16).padStart(2, '0')}`;
  }
  // Keep well under the usual 255-byte name limit; a hash keeps long names distinct.
  if (out.length > 180) out = `${out.slice(0, 100)}~${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
  return `${out}.lock`;
}
