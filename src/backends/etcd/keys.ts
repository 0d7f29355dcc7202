// Where a lock lives in etcd's key space, and the protocol constants the transactions use.
//
// A lock name owns the prefix `<prefix><escaped name>/`; each holder or waiter has one key under it,
// `w/<lease>.<slot>` (exclusive) or `r/<lease>.<slot>` (shared): the session lease's id and a small
// number this backend instance reuses once free. Keys are named by session, as etcd's Mutex names
// them by lease, not by owner: etcd keeps an index entry for every key ever written until the next
// compaction, and a range over a hot name would otherwise walk one entry per past acquisition. The
// owner is data in the value. Escaping '%' and '/' in the name keeps one name's prefix from
// containing another's ("a/" and "a%2Fb/"). Order among a name's keys is their create revision,
// which etcd assigns from one global counter: the lowest holds, and that revision is the fence.

/** etcd's enums as the wire numbers (the client's enums are not imported: etcd3 is an optional peer). */
export const CMP = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const TARGET = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;
export const SORT = { ASCEND: 1, BY_CREATE: 2 } as const;

export type Mode = 'w' | 'r';

export interface LockKeys {
  /** Everything of the name: [all, allEnd). */
  all: Buffer;
  allEnd: Buffer;
  /** Exclusive keys only: [writers, writersEnd). */
  writers: Buffer;
  writersEnd: Buffer;
  /** The key of this slot in each mode. */
  mine: { w: Buffer; r: Buffer };
}

/** The end of the range of keys that start with `prefix` (its last byte plus one). */
export function rangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all keys: never reached, prefixes end in '/'
}

export const escapeName = (name: string): string => (/[%/]/.test(name) ? name.replace(/[%/]/g, (c) => (c === '%' ? '%25' : '%2F')) : name);

/** A slot's key tail: the session lease's id and the slot. */
export const tag = (lease: { id: string }, slot: number): string => `${lease.id}.${slot}`;

/** The keys of `name`, and of the slot `tag` ("<lease>.<slot>"; empty when only the name matters). */
export function keysFor(root: Buffer, name: string, tag: string): LockKeys {
  const all = Buffer.concat([root, Buffer.from(`${escapeName(name)}/`, 'utf8')]);
  const writers = Buffer.concat([all, Buffer.from('w/')]);
  return {
    all,
    allEnd: rangeEnd(all),
    writers,
    writersEnd: rangeEnd(writers),
    mine: { w: Buffer.concat([writers, Buffer.from(tag)]), r: Buffer.concat([all, Buffer.from(`r/${tag}`)]) },
  };
}

/** One key of a name, as read back: its mode comes from the key's tail. */
export interface Entry {
  key: Buffer;
  mode: Mode;
  create: bigint;
  lease: string;
  value: Buffer | undefined;
}

export function parseEntry(all: Buffer, kv: { key: Buffer; create_revision: string; lease: string; value?: Buffer }): Entry | undefined {
  const tail = kv.key.subarray(all.length);
  const mode = tail[0] === 0x77 ? 'w' : tail[0] === 0x72 ? 'r' : undefined;
  if (mode === undefined || tail[1] !== 0x2f) return undefined; // not a lock key: ignored
  return { key: kv.key, mode, create: BigInt(kv.create_revision), lease: kv.lease, value: kv.value };
}

/**
 * A key's value: when its holder's ttl ends (epoch ms), for a semaphore permit the limit it was asked
 * with (0: none), so inspect can tell holders from waiters, and the owner (the rest: any string).
 */
export const encodeValue = (expiresAt: number, limit: number, owner: string): Buffer =>
  Buffer.from(`${Math.floor(expiresAt)} ${limit} ${owner}`, 'utf8');

export function decodeValue(value: Buffer | undefined): { expiresAt: number; limit: number; owner: string } {
  const text = value?.toString('utf8') ?? '';
  const a = text.indexOf(' ');
  const b = text.indexOf(' ', a + 1);
  return {
    expiresAt: Number(text.slice(0, a)) || Infinity,
    limit: Number(text.slice(a + 1, b)) || 0,
    owner: b < 0 ? '' : text.slice(b + 1),
  };
}
