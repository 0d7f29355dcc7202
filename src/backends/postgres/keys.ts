// Lock names to PostgreSQL's 64-bit advisory key space. The hash is part of the public contract:
// every process (and every version of Locksmith) must map a name to the same key, or two of them
// would lock different keys for the same name.

import { createHash } from 'node:crypto';

/** Signed 64-bit: the type pg_advisory_lock(bigint) takes. */
const asKey = (digest: Buffer): bigint => BigInt.asIntN(64, digest.readBigUInt64BE(0));

/**
 * The advisory key of a lock name: the first 8 bytes of SHA-256("n" + UTF-8 name), big-endian, as a
 * signed bigint. Two names share a key with probability about n²/2⁶⁵ for n names (one in 10⁸ for
 * 600 000 names); two names that share one are one lock.
 */
export function advisoryKey(name: string): bigint {
  return asKey(createHash('sha256').update('n').update(name, 'utf8').digest());
}

/**
 * The key of a semaphore's slot `i`: derived from the name's key, with a different first byte, so
 * a slot's key is never a name's key unless SHA-256 collides.
 */
export function slotKey(nameKey: bigint, slot: number): bigint {
  return asKey(createHash('sha256').update(`s${slot}:${nameKey}`).digest());
}

/**
 * The key a name's waiters hold shared while they wait (wakeup.ts): a release that finds it held
 * sends a NOTIFY. Derived as slot keys are, with its own first byte.
 */
export function waitKey(nameKey: bigint): bigint {
  return asKey(createHash('sha256').update(`w:${nameKey}`).digest());
}

/** The key a name's waiting writers hold shared, so readers that prefer writers hold back. */
export function intentKey(nameKey: bigint): bigint {
  return asKey(createHash('sha256').update(`i:${nameKey}`).digest());
}

/**
 * The key a change of a pool's members holds for its transaction (pools.ts), so changes of one pool
 * run one at a time across every instance. Derived as wait keys are, with its own first byte.
 */
export function poolKey(nameKey: bigint): bigint {
  return asKey(createHash('sha256').update(`p:${nameKey}`).digest());
}
