// Pool membership on etcd: one key per pool holding its members as a JSON array, beside the lock
// names but never one of them ("<prefix>%pool/<escaped pool>/members": an escaped lock name cannot
// start with "%p"). A change is a compare-and-swap on the key's mod revision, retried when another
// change came first, so every change is atomic. The list is kept in one value, so it is bound by
// etcd's request size (1.5 MiB by default): about 10 000 members of 100 bytes.
//
// Waking: a member given back puts "<...>/returned". A read of the members arms one watch per pool
// (not per waiter) on the pool's keys from the revision after that read, so no change between the
// read and the watch is missed; an event wakes the pool key's waiters (wake.ts) and ends the watch,
// which the waiters' next read arms again.

import { LockAcquisitionError } from '../../errors.js';
import { addTo, removeFrom, type PoolStore } from '../shared/pools.js';
import type { CallOptions, EtcdClient, Watcher } from './client.js';
import { CMP, TARGET, escapeName, rangeEnd } from './keys.js';

/** How many times a change is tried again after losing a race to another change. */
const RACES = 20;

interface PoolKeys {
  base: Buffer;
  end: Buffer;
  members: Buffer;
  returned: Buffer;
}

export class EtcdPools implements PoolStore {
  readonly #watches = new Map<string, Watcher>();
  #closed = false;

  constructor(
    private readonly client: EtcdClient,
    private readonly root: Buffer,
    private readonly call: () => CallOptions,
    private readonly wake: (pool: string) => void,
  ) {}

  add(pool: string, members: readonly string[], max: number): Promise<number | null> {
    return this.#change(pool, (set) => {
      const added = addTo(set, members, max);
      return { result: added, write: added !== null && added > 0 };
    });
  }

  remove(pool: string, members: readonly string[]): Promise<number> {
    return this.#change(pool, (set) => {
      const removed = removeFrom(set, members);
      return { result: removed, write: removed > 0 };
    });
  }

  assign(pool: string, members: readonly string[]): Promise<void> {
    return this.#change(pool, (set) => {
      set.clear();
      for (const m of members) set.add(m);
      return { result: undefined, write: true };
    });
  }

  async members(pool: string): Promise<string[]> {
    const k = this.#keys(pool);
    const r = await this.client.kv.range({ key: k.members }, this.call());
    this.#arm(pool, k, r.header.revision);
    return [...this.#parse(pool, r.kvs[0]?.value)];
  }

  async notify(pool: string): Promise<void> {
    await this.client.kv.txn(
      { compare: [], success: [{ request_put: { key: this.#keys(pool).returned, value: Buffer.alloc(0) } }], failure: [] },
      this.call(),
    );
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watches.values()) w.cancel().catch(() => undefined);
    this.#watches.clear();
  }

  #keys(pool: string): PoolKeys {
    const base = Buffer.concat([this.root, Buffer.from(`%pool/${escapeName(pool)}/`, 'utf8')]);
    return {
      base,
      end: rangeEnd(base),
      members: Buffer.concat([base, Buffer.from('members')]),
      returned: Buffer.concat([base, Buffer.from('returned')]),
    };
  }

  #parse(pool: string, value: Buffer | undefined): Set<string> {
    if (value === undefined || value.length === 0) return new Set();
    try {
      const list = JSON.parse(value.toString('utf8')) as unknown;
      if (Array.isArray(list) && list.every((m) => typeof m === 'string')) return new Set(list);
    } catch {
      // Reported below, as any value of another shape.
    }
    throw new LockAcquisitionError(`pool "${pool}": its etcd key does not hold a list of members`, { key: pool });
  }

  /**
   * Reads the list, lets `edit` change it, and writes it back (deletes it when empty) only if nobody
   * wrote it since the read: IF mod revision unchanged THEN put ELSE read again.
   */
  async #change<R>(pool: string, edit: (set: Set<string>) => { result: R; write: boolean }): Promise<R> {
    const k = this.#keys(pool);
    for (let race = 0; race < RACES; race++) {
      const r = await this.client.kv.range({ key: k.members }, this.call());
      const kv = r.kvs[0];
      const set = this.#parse(pool, kv?.value);
      const { result, write } = edit(set);
      if (!write) return result;
      const op =
        set.size === 0
          ? { request_delete_range: { key: k.base, range_end: k.end } } // the pool's every key
          : { request_put: { key: k.members, value: Buffer.from(JSON.stringify([...set]), 'utf8') } };
      const txn = await this.client.kv.txn(
        {
          compare: [{ key: k.members, target: TARGET.MOD, result: CMP.EQUAL, mod_revision: kv?.mod_revision ?? '0' }],
          success: [op],
          failure: [],
        },
        this.call(),
      );
      if (txn.succeeded) return result;
    }
    throw new LockAcquisitionError(`pool "${pool}": ${RACES} changes of its members came first, one after another`, { key: pool });
  }

  /** One watch per pool: the first event after `revision` on its keys wakes its waiters, then the watch ends. */
  #arm(pool: string, k: PoolKeys, revision: string): void {
    if (this.#closed || this.#watches.has(pool)) return;
    const ns = this.client.prefix.length;
    const watcher = this.client
      .watch()
      .inRange({ start: k.base.subarray(ns), end: k.end.subarray(ns) })
      .startRevision((BigInt(revision) + 1n).toString())
      .watcher();
    const fire = (): void => {
      if (this.#watches.get(pool) !== watcher) return;
      this.#watches.delete(pool);
      watcher.cancel().catch(() => undefined);
      this.wake(pool);
    };
    watcher.on('put', fire);
    watcher.on('delete', fire);
    watcher.on('error', fire);
    this.#watches.set(pool, watcher);
  }
}
