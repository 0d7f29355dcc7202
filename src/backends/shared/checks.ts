// Option checks every backend makes the same way, so their messages read alike and the limits live once.

import { LockArgumentError } from '../../errors.js';

/** The longest key prefix a backend takes: room for a name within Redis's and etcd's key limits. */
export const MAX_PREFIX = 128;

/** An integer number of ms in [min, max]. */
export function isMs(value: unknown, min: number, max = 600_000): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** `value` (or `fallback` when undefined) as a checked number of ms. */
export function msOption(where: string, name: string, value: unknown, fallback: number, min: number, max = 600_000): number {
  const ms = value === undefined ? fallback : value;
  if (!isMs(ms, min, max)) throw new LockArgumentError(`${where}: ${name} must be an integer number of ms from ${min} to ${max}`);
  return ms;
}

/**
 * A key prefix: braces would break Redis Cluster hash tags and whitespace makes keys unreadable in
 * tools, so neither is allowed anywhere a prefix is.
 */
export function prefixOption(where: string, value: unknown, fallback: string): string {
  const prefix = value === undefined ? fallback : value;
  if (typeof prefix !== 'string' || prefix.length > MAX_PREFIX || /[{}\s]/.test(prefix)) {
    throw new LockArgumentError(`${where}: prefix must be a string of at most ${MAX_PREFIX} characters without braces or spaces`);
  }
  return prefix;
}
