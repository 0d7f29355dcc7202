// The checks on pool member names, made before any I/O. Members are data in every store (a Redis
// set, a PostgreSQL column, a JSON array), never property names; what is refused is what one of them
// could not keep or tell apart: control characters (PostgreSQL text cannot hold NUL) and lone UTF-16
// surrogates (UTF-8 cannot encode one, so two names would become the same member).

import { LockArgumentError } from '../errors.js';
import { checkKey } from '../options.js';

/** The most members a pool may have (and one call may name). */
export const MAX_MEMBERS = 10_000;
/** The longest member name, in UTF-8 bytes. */
export const MAX_MEMBER_BYTES = 256;

// eslint-disable-next-line no-control-regex
const REFUSED = /[\u0000-\u001f\u007f]|\p{Cs}/u;

export function checkMember(value: unknown, pool: string, where: string): string {
  if (typeof value !== 'string' || value.length === 0 || Buffer.byteLength(value, 'utf8') > MAX_MEMBER_BYTES || REFUSED.test(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 64)) : typeof value;
    throw new LockArgumentError(
      `${where}: a member must be a non-empty string of at most ${MAX_MEMBER_BYTES} bytes, without control characters or lone surrogates, got ${shown}`,
      { key: pool },
    );
  }
  // Its lock's key must be a valid key too.
  checkKey(`${pool}:${value}`, 'member key');
  return value;
}

/** A list of distinct members, at most MAX_MEMBERS. */
export function checkMembers(value: unknown, pool: string, where: string): string[] {
  if (!Array.isArray(value)) throw new LockArgumentError(`${where}: members must be an array of strings`, { key: pool });
  if (value.length > MAX_MEMBERS) {
    throw new LockArgumentError(`${where}: ${value.length} members; a pool has at most ${MAX_MEMBERS}`, { key: pool });
  }
  const seen = new Set<string>();
  for (const item of value as unknown[]) {
    const member = checkMember(item, pool, where);
    if (seen.has(member)) throw new LockArgumentError(`${where}: member "${member}" is named twice`, { key: pool });
    seen.add(member);
  }
  return [...seen];
}
