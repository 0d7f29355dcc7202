// A lock pool lends members of a set (GPUs, licences, accounts) one holder at a time, as
// redis_allocator's lock pools do. The set lives in the backend's pool store, so every process lends
// from one list and any of them may change it; a lent member is an ordinary lock on its own key
// ("pool:<name>:<member>"), with its fence, ttl and signal. Waiting is the one wait loop of the core
// (Locks.waitFor) on the pool's key, which the store wakes when members are added and a lease wakes
// when it gives its member back; a holder that dies is found by the loop's safety poll.
//
// On a backend with no pool store (Redlock: a quorum of sets is not one list) the members live in
// this Pool object, given with the `members` option, and waiters elsewhere are not woken by changes.

import { performance } from 'node:perf_hooks';
import { LockAcquisitionError, LockArgumentError, LockError, LockTimeoutError } from '../errors.js';
import { MemberSets, type PoolStore } from '../backends/shared/pools.js';
import { checkBoolean, checkKey, checkOptionNames, checkSignal, checkTtl, checkWait } from '../options.js';
import type { Locks } from './locks.js';
import { PoolLease, type LeaseOptions } from './pool-lease.js';
import { checkMembers, checkMember, MAX_MEMBERS } from './pool-members.js';

export { PoolLease } from './pool-lease.js';
export { MAX_MEMBERS, MAX_MEMBER_BYTES } from './pool-members.js';

export interface PoolOptions {
  /** Members to add when the pool is made (the backend's list is kept; these are added to it). */
  members?: readonly string[];
}

export interface PoolAcquireOptions {
  /** That member, waiting for it; absent: any free member. */
  member?: string;
  ttl?: number;
  wait?: number;
  signal?: AbortSignal;
  autoRenew?: boolean;
}

export type PoolTryAcquireOptions = Omit<PoolAcquireOptions, 'wait' | 'signal'>;

export interface PoolStats {
  acquired: number;
  released: number;
  /** Allocations that had to wait for a member. */
  waited: number;
  timeouts: number;
}

export interface MemberStatus {
  member: string;
  held: boolean;
  holders: { owner: string; fence: bigint; expiresAt: number }[];
}

/** redis_allocator's health check: counts, and every member's holders. */
export interface PoolStatus {
  total: number;
  free: number;
  held: number;
  members: MemberStatus[];
}

/** How many member locks status() inspects at once. */
const INSPECT_BATCH = 32;

export class Pool {
  readonly name: string;
  readonly #locks: Locks;
  readonly #store: PoolStore;
  /** The pool's key: the store's name for it, and the key its waiters wait on. */
  readonly #key: string;
  readonly #stats: PoolStats = { acquired: 0, released: 0, waited: 0, timeouts: 0 };
  /** The `members` option's add, which every call waits for (a failure was reported, and is not repeated). */
  #ready: Promise<unknown> = Promise.resolve();

  constructor(locks: Locks, name: string, options?: PoolOptions) {
    this.#locks = locks;
    this.name = checkKey(name, 'pool name');
    this.#key = checkKey(`pool:${name}`, 'pool key');
    const o = checkOptionNames(options, ['members'], 'pool()');
    const initial = o.members === undefined ? [] : checkMembers(o.members, this.#key, 'pool()');
    this.#store = guarded(locks.backend.pools ?? new MemberSets((pool) => locks.changed(pool)).store(), locks.backend.name);
    if (initial.length > 0) {
      this.#ready = this.#add(initial).catch((error: unknown) => locks.reportError(error, { key: this.#key }));
    }
    locks.register('pools', this.name, this);
  }

  stats(): PoolStats {
    return { ...this.#stats };
  }

  /** Adds members (those in already stay); how many were new. */
  async add(members: string | readonly string[]): Promise<number> {
    const list = checkMembers(typeof members === 'string' ? [members] : members, this.#key, 'pool.add()');
    await this.#ready;
    return this.#add(list);
  }

  /** Stops lending members; a member lent now stays with its holder until released. How many were in. */
  async remove(members: string | readonly string[]): Promise<number> {
    const list = checkMembers(typeof members === 'string' ? [members] : members, this.#key, 'pool.remove()');
    await this.#ready;
    return this.#store.remove(this.#key, list);
  }

  /** Replaces every member at once. */
  async assign(members: readonly string[]): Promise<void> {
    const list = checkMembers(members, this.#key, 'pool.assign()');
    await this.#ready;
    await this.#store.assign(this.#key, list);
    this.#locks.changed(this.#key);
  }

  /** Removes every member (lent ones stay lent until released). */
  async clear(): Promise<void> {
    await this.#ready;
    await this.#store.assign(this.#key, []);
  }

  /** The members as the backend keeps them, sorted. */
  async members(): Promise<string[]> {
    await this.#ready;
    return (await this.#store.members(this.#key)).sort();
  }

  /** Lends `member` (waiting for it, also until it is added), or any free member; waits up to `wait` ms. */
  async acquire(options?: PoolAcquireOptions): Promise<PoolLease> {
    const o = checkOptionNames(options, ['member', 'ttl', 'wait', 'signal', 'autoRenew'], 'pool.acquire()');
    const { member, lease } = this.#leaseOptions(o, 'pool.acquire()');
    const wait = {
      ...(o.wait !== undefined && { wait: checkWait(o.wait, this.#key) }),
      ...(o.signal !== undefined && { signal: checkSignal(o.signal, this.#key) }),
    };
    await this.#ready;
    const started = performance.now();
    try {
      const got = await this.#locks.waitFor(this.#key, () => this.#attempt(member, lease), wait);
      if (performance.now() - started > 1) this.#stats.waited += 1;
      return got;
    } catch (error) {
      if (!(error instanceof LockTimeoutError)) throw error;
      this.#stats.timeouts += 1;
      const what = member === undefined ? 'no member was free' : `member "${member}" was not free`;
      throw new LockTimeoutError(`pool "${this.name}": ${what} after waiting ${error.waited ?? 0} ms`, {
        key: this.#key,
        waited: error.waited ?? 0,
      });
    }
  }

  /** Lends `member`, or any free member, if one is free now; null if not. */
  async tryAcquire(options?: PoolTryAcquireOptions): Promise<PoolLease | null> {
    const o = checkOptionNames(options, ['member', 'ttl', 'autoRenew'], 'pool.tryAcquire()');
    const { member, lease } = this.#leaseOptions(o, 'pool.tryAcquire()');
    await this.#ready;
    const got = await this.#attempt(member, lease);
    return 'value' in got ? got.value : null;
  }

  /** The member and the member lock's options of an acquire, checked before any I/O. */
  #leaseOptions(o: Record<string, unknown>, where: string): { member: string | undefined; lease: LeaseOptions } {
    const member = o.member === undefined ? undefined : checkMember(o.member, this.#key, where);
    const lease: LeaseOptions = {};
    if (o.ttl !== undefined) lease.ttl = checkTtl(o.ttl, this.#key);
    if (o.autoRenew !== undefined) lease.autoRenew = checkBoolean(o.autoRenew, 'autoRenew', this.#key);
    return { member, lease };
  }

  /** Every member with its holders, and the counts. */
  async status(): Promise<PoolStatus> {
    const names = await this.members();
    const members: MemberStatus[] = [];
    for (let i = 0; i < names.length; i += INSPECT_BATCH) {
      const batch = names.slice(i, i + INSPECT_BATCH);
      const infos = await Promise.all(batch.map((member) => this.#locks.inspect(this.#memberKey(member))));
      batch.forEach((member, j) => {
        const holders = infos[j]?.holders ?? [];
        members.push({ member, held: holders.length > 0, holders });
      });
    }
    const held = members.filter((m) => m.held).length;
    return { total: members.length, free: members.length - held, held, members };
  }

  async #add(members: readonly string[]): Promise<number> {
    const added = await this.#store.add(this.#key, members, MAX_MEMBERS);
    if (added === null) {
      throw new LockArgumentError(`pool "${this.name}" would have more than ${MAX_MEMBERS} members; nothing was added`, { key: this.#key });
    }
    if (added > 0) this.#locks.changed(this.#key);
    return added;
  }

  #memberKey(member: string): string {
    return `${this.#key}:${member}`;
  }

  /** One try: `member` if it is in the pool and free, else any free member, tried in a random order. */
  async #attempt(member: string | undefined, options: LeaseOptions): Promise<{ value: PoolLease } | { retryAfter?: number }> {
    const members = await this.#store.members(this.#key);
    const candidates = member === undefined ? shuffled(members) : members.includes(member) ? [member] : [];
    for (const m of candidates) {
      const lock = await this.#locks.tryAcquire(this.#memberKey(m), options);
      if (lock) {
        this.#stats.acquired += 1;
        return { value: new PoolLease(m, lock, () => this.#returned()) };
      }
    }
    return {};
  }

  /** A member came back: waiters here at once, and (through the store) everywhere else. */
  async #returned(): Promise<void> {
    this.#stats.released += 1;
    this.#locks.changed(this.#key);
    await this.#store.notify(this.#key).catch((error: unknown) => this.#locks.reportError(error, { key: this.#key }));
  }
}

/** `store` with its failures as LockErrors (a client's own error becomes the cause). */
function guarded(store: PoolStore, backend: string): PoolStore {
  const fail =
    (pool: string) =>
    (error: unknown): never => {
      if (error instanceof LockError) throw error;
      throw new LockAcquisitionError(`pool "${pool}": the ${backend} backend failed`, { key: pool, cause: error });
    };
  return {
    add: (pool, members, max) => store.add(pool, members, max).catch(fail(pool)),
    remove: (pool, members) => store.remove(pool, members).catch(fail(pool)),
    assign: (pool, members) => store.assign(pool, members).catch(fail(pool)),
    members: (pool) => store.members(pool).catch(fail(pool)),
    notify: (pool) => store.notify(pool).catch(fail(pool)),
  };
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
