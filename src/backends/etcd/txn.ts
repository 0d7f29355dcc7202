// Every request the backend sends, each one etcd transaction (one round trip), named and built in one
// place. A transaction's reads see its own writes, so "create my key, then list the name's keys by
// create revision" answers in one trip whether the new key is first (etcd's Mutex does the same).

import type { CallOptions, Compare, KeyValue, KVClient, RequestOp, TxnResponse } from './client.js';
import { CMP, SORT, TARGET, parseEntry, type Entry, type LockKeys } from './keys.js';

/** The name's keys, oldest first (keys only: the rules need key, create revision and lease). */
const list = (k: LockKeys): RequestOp => ({
  request_range: { key: k.all, range_end: k.allEnd, sort_order: SORT.ASCEND, sort_target: SORT.BY_CREATE, keys_only: true },
});
const put = (key: Buffer, value: Buffer, lease: string): RequestOp => ({ request_put: { key, value, lease } });
const absent = (key: Buffer, range_end?: Buffer): Compare => ({
  key,
  range_end,
  target: TARGET.CREATE,
  result: CMP.EQUAL,
  create_revision: 0,
});

/** A session lease's guard (guard.ts): every create compares its mod revision, cleanups of unknown outcomes move it. */
export interface Guard {
  key: Buffer;
  /** Its mod revision as known here ("0": never written, as etcd reports an absent key). */
  rev: string;
  /** The session lease it lives on. */
  lease: string;
}

/** The create's condition: no cleanup of an unknown outcome went through since the guard was read. */
const unmoved = (guard: Guard): Compare => ({ key: guard.key, target: TARGET.MOD, result: CMP.EQUAL, mod_revision: guard.rev });

/** A failure branch's first op: the guard as it is, so a create refused by the guard alone learns its revision. */
const readGuard = (guard: Guard): RequestOp => ({ request_range: { key: guard.key, keys_only: true } });

/** A cleanup's extra op: rewrites the guard, so every create sent before it fails if it lands after. */
const moveGuard = (guard: Guard): RequestOp => ({ request_put: { key: guard.key, value: Buffer.alloc(0), lease: guard.lease } });

export interface Listing {
  /** The transaction's compare held (it wrote what it meant to). */
  wrote: boolean;
  /** The store revision the listing was read at: a watch from the next one misses nothing. */
  revision: string;
  entries: Entry[];
  /** A create that did not go through: the guard's revision, as its failure branch read it (guard.ts). */
  guard?: string;
}

function entries(k: LockKeys, kvs: readonly KeyValue[]): Entry[] {
  const out: Entry[] = [];
  for (const kv of kvs) {
    const e = parseEntry(k.all, kv);
    if (e) out.push(e);
  }
  return out;
}

function listing(k: LockKeys, r: TxnResponse): Listing {
  return {
    wrote: r.succeeded,
    revision: r.header.revision,
    entries: entries(k, r.responses[r.responses.length - 1]?.response_range?.kvs ?? []),
  };
}

/** A create's answer: the listing, and when it did not go through, the guard it read first (absent: "0"). */
function created(k: LockKeys, r: TxnResponse): Listing {
  const out = listing(k, r);
  if (!r.succeeded) out.guard = r.responses[0]?.response_range?.kvs[0]?.mod_revision ?? '0';
  return out;
}

/**
 * CLAIM (exclusive, when the name is expected free): IF no key of the name exists AND the guard has
 * not moved THEN put mine: it is first, so granted, and its fence is the transaction's revision;
 * nothing is listed, the common case sends and reads the least. ELSE read the guard and list. `queue`:
 * refused by a holder (not by a moved guard, which the caller reads again first), take a place in
 * line in a second transaction (ENQUEUE of the exclusive key); otherwise (a one-off try) leave
 * nothing behind. A name known to be busy goes straight to ENQUEUE (guard.ts): an enqueue branch
 * sent along on every claim, used or not, cost the uncontended acquire+release 2-3 % (measured).
 */
export async function claim(kv: KVClient, k: LockKeys, value: Buffer, guard: Guard, queue: boolean, o: CallOptions): Promise<Listing> {
  const mine = k.mine.w;
  const r = await kv.txn(
    { compare: [absent(k.all, k.allEnd), unmoved(guard)], success: [put(mine, value, guard.lease)], failure: [readGuard(guard), list(k)] },
    o,
  );
  const revision = r.header.revision;
  if (r.succeeded)
    return { wrote: true, revision, entries: [{ key: mine, mode: 'w', create: BigInt(revision), lease: guard.lease, value }] };
  const out = created(k, r);
  if (queue && out.guard === guard.rev) return enqueue(kv, k, value, guard, o, mine);
  return out;
}

/**
 * ENQUEUE (shared, or exclusive after a CLAIM that only listed): IF my key does not exist AND the
 * guard has not moved THEN put it (on the session lease) and list ELSE read the guard and list. Takes
 * a place in line that stays until released: a waiter's key orders it FIFO by create revision.
 */
export async function enqueue(kv: KVClient, k: LockKeys, value: Buffer, guard: Guard, o: CallOptions, mine = k.mine.r): Promise<Listing> {
  const r = await kv.txn(
    { compare: [absent(mine), unmoved(guard)], success: [put(mine, value, guard.lease), list(k)], failure: [readGuard(guard), list(k)] },
    o,
  );
  return created(k, r);
}

/** LIST: a waiter already in line only reads where it stands (a read, not a raft write). */
export async function listKeys(kv: KVClient, k: LockKeys, o: CallOptions): Promise<Listing> {
  const r = await kv.range(list(k).request_range!, o);
  return { wrote: false, revision: r.header.revision, entries: entries(k, r.kvs) };
}

/**
 * TRY (shared): IF no exclusive key of the name exists AND the guard has not moved THEN put mine and
 * list ELSE read the guard and list. A one-off try leaves nothing behind when refused.
 */
export async function tryCreate(kv: KVClient, k: LockKeys, value: Buffer, guard: Guard, o: CallOptions): Promise<Listing> {
  const mine = k.mine.r;
  const compare = [absent(k.writers, k.writersEnd), absent(mine), unmoved(guard)];
  const r = await kv.txn({ compare, success: [put(mine, value, guard.lease), list(k)], failure: [readGuard(guard), list(k)] }, o);
  return created(k, r);
}

/** EXTEND: IF my key still has create revision `fence` and is on `lease` THEN rewrite its value (expiry) keeping the lease. */
export async function rewrite(kv: KVClient, key: Buffer, fence: bigint, lease: string, value: Buffer, o: CallOptions): Promise<boolean> {
  const compare: Compare[] = [
    { key, target: TARGET.CREATE, result: CMP.EQUAL, create_revision: fence.toString() },
    { key, target: TARGET.LEASE, result: CMP.EQUAL, lease },
  ];
  const r = await kv.txn({ compare, success: [{ request_put: { key, value, ignore_lease: true } }], failure: [] }, o);
  return r.succeeded;
}

/**
 * DELETE_IF: IF the key still has create revision `fence` THEN delete it (never a later key of the same
 * owner). The store revision after it, so a watch armed next does not hear this delete. `guard`: the
 * slot may still see a late create (guard.ts), so the guard moves either way.
 */
export async function deleteIf(kv: KVClient, key: Buffer, fence: bigint, o: CallOptions, guard?: Guard): Promise<string> {
  const compare: Compare[] = [{ key, target: TARGET.CREATE, result: CMP.EQUAL, create_revision: fence.toString() }];
  const moved = guard ? [moveGuard(guard)] : [];
  const r = await kv.txn({ compare, success: [{ request_delete_range: { key } }, ...moved], failure: moved }, o);
  return r.header.revision;
}

/**
 * RELEASE: delete both of the owner's keys (held or waiting), then (`listAfter`: when a waiter of this
 * same instance may be next) list the name's keys; how many went, and the line as the deletion left it.
 * `guard`: the slot may still see a late create (guard.ts), so the guard moves in the same step.
 * `only`: the owner's one key, when it is known (a hold whose fence is known); every op costs.
 */
export async function deleteMine(
  kv: KVClient,
  k: LockKeys,
  o: CallOptions,
  listAfter = false,
  guard?: Guard,
  only?: Buffer,
): Promise<{ deleted: number; after: Listing; revision: string }> {
  if (only && !guard && !listAfter) {
    // One key and nothing else: a DeleteRange, not a transaction of one delete, which cost 3-11 %
    // more per acquire+release (measured: a create transaction and the two deletes in turn).
    const r = await kv.deleteRange({ key: only }, o);
    return { deleted: Number(r.deleted), after: { wrote: true, revision: r.header.revision, entries: [] }, revision: r.header.revision };
  }
  const mine = only ? [only] : [k.mine.w, k.mine.r];
  const ops: RequestOp[] = mine.map((key) => ({ request_delete_range: { key } }));
  if (guard) ops.push(moveGuard(guard));
  if (listAfter) ops.push(list(k));
  const r = await kv.txn({ compare: [], success: ops, failure: [] }, o);
  const deleted = r.responses.reduce((n, op) => n + Number(op.response_delete_range?.deleted ?? 0), 0);
  return { deleted, after: listing(k, r), revision: r.header.revision };
}

/**
 * HANDOFF (handoff.ts): IF the next waiter's key does not exist AND the guard of its session has not
 * moved THEN delete my key, put the waiter's (on the session lease) and list ELSE delete my key, read
 * the guard and list. One raft write hands the lock on and puts the next waiter of this instance in
 * line; the listing tells it where it stands, as a release's listing does.
 */
export async function handOff(
  kv: KVClient,
  k: LockKeys,
  mine: Buffer,
  next: { key: Buffer; value: Buffer },
  guard: Guard,
  o: CallOptions,
): Promise<{ deleted: number; after: Listing; revision: string }> {
  const gone: RequestOp = { request_delete_range: { key: mine } };
  const r = await kv.txn(
    {
      compare: [absent(next.key), unmoved(guard)],
      success: [gone, put(next.key, next.value, guard.lease), list(k)],
      failure: [gone, readGuard(guard), list(k)],
    },
    o,
  );
  const after = listing(k, r);
  if (!r.succeeded) after.guard = r.responses[1]?.response_range?.kvs[0]?.mod_revision ?? '0';
  return { deleted: Number(r.responses[0]?.response_delete_range?.deleted ?? 0), after, revision: r.header.revision };
}

/** INSPECT: the name's keys with their values, oldest first. */
export async function listValues(kv: KVClient, k: LockKeys, o: CallOptions): Promise<Entry[]> {
  const r = await kv.range({ key: k.all, range_end: k.allEnd, sort_order: SORT.ASCEND, sort_target: SORT.BY_CREATE }, o);
  return entries(k, r.kvs);
}
