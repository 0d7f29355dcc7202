// Validation and defaults. The checks every call shares live here (option names, keys, ttl, wait,
// owners, signals, the Locksmith's defaults), and primitives, recipes and backends build their own
// checks from them and from backends/shared/checks.ts, so every bad input fails before any I/O, at
// the call site, with a message that reads alike wherever it was raised.

import { LockArgumentError } from './errors.js';
import { isMs } from './backends/shared/checks.js';
import type { LockBackend, RwPolicy } from './backend.js';

/** Longest lease: timers in Node cannot fire later than 2^31-1 ms. */
export const MAX_TTL = 2 ** 31 - 1;
/** Longest key, in UTF-8 bytes. Longer names are almost always a bug (a serialized object, say). */
export const MAX_KEY_BYTES = 1024;
export const MAX_OWNER_LENGTH = 256;
export const MAX_LIMIT = 1_000_000;

export type { RwPolicy };

export interface Backoff {
  /** First retry delay cap in ms; doubles each retry (full jitter picks uniformly below the cap). */
  initial: number;
  /** Largest retry delay cap in ms; also the safety poll when the backend wakes waiters. */
  max: number;
}

/** Anything with warn and error, such as console or a pino logger. */
export interface Logger {
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export interface LocksmithOptions {
  /** Default lease length in ms. */
  ttl?: number;
  /** Default time acquire may wait in ms (0: try once; Infinity: until the signal aborts). */
  wait?: number;
  /** Default for `autoRenew` on acquire (withLock-style helpers always renew unless told not to). */
  autoRenew?: boolean;
  /** Default read-write policy. */
  policy?: RwPolicy;
  /** Retry delays for backends that do not wake waiters. */
  backoff?: Partial<Backoff>;
  /**
   * Where errors with no caller to throw to go (a failed release in `await using`, a failed renewal)
   * when nothing listens for 'error': anything with warn and error, such as console or pino.
   */
  logger?: Logger;
}

/** The defaults a `Locksmith` applies, after checking (`locks.defaults`): every field filled in. */
export interface ResolvedDefaults {
  ttl: number;
  wait: number;
  autoRenew: boolean;
  policy: RwPolicy;
  backoff: Backoff;
  logger: Logger | undefined;
}

export interface AcquireOptions {
  /** Lease length in ms. */
  ttl?: number;
  /** How long to wait in ms (0: try once; Infinity: until `signal` aborts). */
  wait?: number;
  /** Cancels the wait at once; the acquire rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Renew the lease every ttl/3 while held (watchdog). */
  autoRenew?: boolean;
  /** Nested acquires by the same owner (explicit, or the async context of a `with*` scope) re-enter. */
  reentrant?: boolean;
  /** Explicit owner identity; random (from crypto) when absent. */
  owner?: string;
}

export interface RwOptions extends AcquireOptions {
  policy?: RwPolicy;
}

export type TryAcquireOptions = Omit<AcquireOptions, 'wait' | 'signal'>;

const ACQUIRE_KEYS = ['ttl', 'wait', 'signal', 'autoRenew', 'reentrant', 'owner'] as const;
export const OPTION_NAMES = {
  acquire: ACQUIRE_KEYS,
  tryAcquire: ['ttl', 'autoRenew', 'reentrant', 'owner'],
  rw: [...ACQUIRE_KEYS, 'policy'],
  acquireAll: ['ttl', 'wait', 'signal', 'autoRenew', 'owner'],
  permit: ['ttl', 'wait', 'signal', 'autoRenew', 'owner'],
  tryPermit: ['ttl', 'autoRenew', 'owner'],
  semaphore: ['limit'],
  locksmith: ['ttl', 'wait', 'autoRenew', 'policy', 'backoff', 'logger'],
  backoff: ['initial', 'max'],
  extend: [],
} as const satisfies Record<string, readonly string[]>;

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  if (typeof value === 'function') return 'a function';
  // Only primitives are left here (numbers, booleans, undefined, symbols), which String() shows well.
  // eslint-disable-next-line @typescript-eslint/no-base-to-string
  return String(value);
}

/** Rejects anything but a plain object (or undefined), and any property not in `allowed`. */
export function checkOptionNames(options: unknown, allowed: readonly string[], where: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new LockArgumentError(`${where}: options must be an object, got ${describe(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      const hint = allowed.length ? `; known options: ${allowed.join(', ')}` : '';
      throw new LockArgumentError(`${where}: unknown option "${name}"${hint}`);
    }
  }
  return options as Record<string, unknown>;
}

// String.prototype.isWellFormed (Node 20+; not in the ES2022 lib this package compiles against).
const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed;

/**
 * No lone UTF-16 surrogate. UTF-8 cannot encode one: every client sends U+FFFD for it, so '\uD800'
 * and '\uDBFF' would be one name on a server while they are two here.
 */
export function wellFormed(s: string): boolean {
  return isWellFormed.call(s);
}

export function checkKey(key: unknown, where = 'key'): string {
  if (typeof key !== 'string') {
    throw new LockArgumentError(`${where} must be a string, got ${describe(key)}`);
  }
  if (key.length === 0) throw new LockArgumentError(`${where} must not be empty`);
  if (!wellFormed(key)) {
    throw new LockArgumentError(`${where} must be well-formed UTF-16 (this one has a lone surrogate)`, { key: key.slice(0, 64) });
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes, so a short key needs no counting.
  const bytes = key.length * 3 <= MAX_KEY_BYTES ? 0 : Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) {
    throw new LockArgumentError(`${where} is ${bytes} bytes; the limit is ${MAX_KEY_BYTES}`, { key: key.slice(0, 64) });
  }
  return key;
}

function checkMs(value: unknown, name: string, min: number, allowInfinity: boolean, key?: string): number {
  if (!((allowInfinity && value === Infinity) || isMs(value, min, MAX_TTL))) {
    const range = `an integer number of ms from ${min} to ${MAX_TTL}${allowInfinity ? ', or Infinity' : ''}`;
    throw new LockArgumentError(`${name} must be ${range}, got ${describe(value)}`, { key });
  }
  return value;
}

export const checkTtl = (value: unknown, key?: string): number => checkMs(value, 'ttl', 1, false, key);
export const checkWait = (value: unknown, key?: string): number => checkMs(value, 'wait', 0, true, key);

export function checkBoolean(value: unknown, name: string, key?: string): boolean {
  if (typeof value !== 'boolean') throw new LockArgumentError(`${name} must be a boolean, got ${describe(value)}`, { key });
  return value;
}

export function checkLimit(value: unknown, key?: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
    throw new LockArgumentError(`limit must be an integer from 1 to ${MAX_LIMIT}, got ${describe(value)}`, { key });
  }
  return value;
}

function checkPolicy(value: unknown, key?: string): RwPolicy {
  if (value !== 'reader-preference' && value !== 'writer-preference') {
    throw new LockArgumentError(`policy must be "reader-preference" or "writer-preference", got ${describe(value)}`, { key });
  }
  return value;
}

export function checkOwner(value: unknown, key?: string): string {
  // Control characters are refused: backends store an owner next to its fence (Redis: "owner\nfence"),
  // and an owner "a" must never be mistaken for holder "a\nb". Lone surrogates likewise: two owners
  // that differ only in one would be the same owner on the server.
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > MAX_OWNER_LENGTH ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f]/.test(value) ||
    !wellFormed(value)
  ) {
    throw new LockArgumentError(
      `owner must be a non-empty, well-formed string of at most ${MAX_OWNER_LENGTH} characters without control characters, got ${describe(value)}`,
      { key },
    );
  }
  return value;
}

export function checkSignal(value: unknown, key?: string): AbortSignal {
  if (!(value instanceof AbortSignal)) {
    throw new LockArgumentError(`signal must be an AbortSignal, got ${describe(value)}`, { key });
  }
  return value;
}

export function checkFunction(value: unknown, name: string, key?: string): void {
  if (typeof value !== 'function') throw new LockArgumentError(`${name} must be a function, got ${describe(value)}`, { key });
}

/** A LockBackend, with capabilities the core can rely on. */
export function checkBackend(value: unknown): LockBackend {
  const b = value as Partial<LockBackend> | null;
  const where = 'new Locksmith(backend)';
  if (!b || typeof b !== 'object' || typeof b.acquire !== 'function') {
    throw new LockArgumentError(`${where}: backend must be a LockBackend, such as memoryBackend()`);
  }
  const c = b.capabilities as Partial<LockBackend['capabilities']> | undefined;
  const flags = c && typeof c.shared === 'boolean' && typeof c.wake === 'boolean' && typeof c.fencing === 'boolean';
  if (!flags || (c.expiry !== 'ttl' && c.expiry !== 'connection')) {
    throw new LockArgumentError(
      `${where}: the ${String(b.name)} backend's capabilities must name shared, wake and fencing (booleans) and expiry ('ttl' or 'connection')`,
    );
  }
  if (c.expiry === 'connection' && typeof b.onLost !== 'function') {
    throw new LockArgumentError(`${where}: the ${String(b.name)} backend keeps leases with a connection, so it must offer onLost()`);
  }
  return b as LockBackend;
}

export function resolveDefaults(options: unknown): ResolvedDefaults {
  const o = checkOptionNames(options, OPTION_NAMES.locksmith, 'new Locksmith()');
  const b = checkOptionNames(o.backoff, OPTION_NAMES.backoff, 'backoff');
  const backoff: Backoff = {
    initial: b.initial === undefined ? 10 : checkMs(b.initial, 'backoff.initial', 1, false),
    max: b.max === undefined ? 1000 : checkMs(b.max, 'backoff.max', 1, false),
  };
  if (backoff.max < backoff.initial) throw new LockArgumentError('backoff.max must be at least backoff.initial');
  return {
    ttl: o.ttl === undefined ? 30_000 : checkTtl(o.ttl),
    wait: o.wait === undefined ? 10_000 : checkWait(o.wait),
    autoRenew: o.autoRenew === undefined ? false : checkBoolean(o.autoRenew, 'autoRenew'),
    policy: o.policy === undefined ? 'reader-preference' : checkPolicy(o.policy),
    backoff,
    logger: o.logger === undefined ? undefined : checkLogger(o.logger),
  };
}

function checkLogger(value: unknown): Logger {
  const l = value as Partial<Logger> | null;
  if (!l || typeof l !== 'object' || typeof l.warn !== 'function' || typeof l.error !== 'function') {
    throw new LockArgumentError(`logger must have warn() and error() methods, got ${describe(value)}`);
  }
  return l as Logger;
}

/** Everything an acquisition needs, fully validated. */
export interface ResolvedAcquire {
  ttl: number;
  wait: number;
  signal: AbortSignal | undefined;
  autoRenew: boolean;
  reentrant: boolean;
  owner: string | undefined;
  policy: RwPolicy;
}

export function resolveAcquire(
  key: string,
  options: unknown,
  allowed: readonly string[],
  where: string,
  defaults: ResolvedDefaults,
  autoRenewDefault = defaults.autoRenew,
): ResolvedAcquire {
  const o = checkOptionNames(options, allowed, where);
  return {
    ttl: o.ttl === undefined ? defaults.ttl : checkTtl(o.ttl, key),
    wait: o.wait === undefined ? defaults.wait : checkWait(o.wait, key),
    signal: o.signal === undefined ? undefined : checkSignal(o.signal, key),
    autoRenew: o.autoRenew === undefined ? autoRenewDefault : checkBoolean(o.autoRenew, 'autoRenew', key),
    reentrant: o.reentrant === undefined ? false : checkBoolean(o.reentrant, 'reentrant', key),
    owner: o.owner === undefined ? undefined : checkOwner(o.owner, key),
    policy: o.policy === undefined ? defaults.policy : checkPolicy(o.policy, key),
  };
}
