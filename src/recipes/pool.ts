// A lock pool hands out any free member of a set (GPUs, licences, connections). Built only on the
// public primitives: a semaphore with one permit per member gates the waiters (so they are woken,
// not polling, when a member frees up), then the permit holder takes any free member lock, trying
// members in a random order so load spreads instead of piling onto the first.

import { LockArgumentError, LockTimeoutError } from '../errors.js';
import type { Lock } from '../lock.js';
import type { Locks } from './locks.js';
import { checkKey, checkOptionNames } from '../options.js';
import type { PermitOptions } from '../primitives/semaphore.js';
import { sleep } from '../core/time.js';

export interface PoolOptions {
  members: readonly string[];
}

export type PoolAcquireOptions = Omit<PermitOptions, 'owner'>;

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

/** A member on loan: its own lock (fence, signal) plus the pool permit that admitted it. */
export class PoolLease implements AsyncDisposable {
  readonly member: string;
  readonly lock: Lock;
  readonly #permit: Lock;
  readonly #onRelease: () => void;

  constructor(member: string, lock: Lock, permit: Lock, onRelease: () => void) {
    this.member = member;
    this.lock = lock;
    this.#permit = permit;
    this.#onRelease = onRelease;
  }

  get fence(): bigint {
    return this.lock.fence;
  }
  get signal(): AbortSignal {
    return this.lock.signal;
  }
  get expiresAt(): number {
    return this.lock.expiresAt;
  }

  async extend(ttl?: number): Promise<void> {
    await Promise.all([this.lock.extend(ttl), this.#permit.extend(ttl)]);
  }

  /** Gives the member back; the permit goes last so a waiter woken by it finds the member free. */
  async release(): Promise<void> {
    try {
      await this.lock.release();
    } finally {
      await this.#permit.release();
      this.#onRelease();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.lock[Symbol.asyncDispose]();
    await this.#permit[Symbol.asyncDispose]();
    this.#onRelease();
  }
}

const MAX_MEMBERS = 10_000;

export class Pool {
  readonly name: string;
  readonly #locks: Locks;
  readonly #members: string[] = [];
  readonly #stats: PoolStats = { acquired: 0, released: 0, waited: 0, timeouts: 0 };

  constructor(locks: Locks, name: string, options: PoolOptions) {
    this.#locks = locks;
    this.name = checkKey(name, 'pool name');
    const o = checkOptionNames(options, ['members'], 'pool()');
    if (!Array.isArray(o.members)) throw new LockArgumentError('pool(): members must be an array of strings', { key: name });
    for (const member of o.members as unknown[]) this.add(member as string);
    locks.register('pools', this.name, this);
  }

  get members(): readonly string[] {
    return [...this.#members];
  }

  stats(): PoolStats {
    return { ...this.#stats };
  }

  /** Adds a member at run time (other processes must add it too to lend it out). */
  add(member: string): void {
    checkKey(this.#memberKey(checkKey(member, 'member')), 'member key');
    if (this.#members.includes(member))
      throw new LockArgumentError(`pool "${this.name}" already has member "${member}"`, { key: this.name });
    if (this.#members.length >= MAX_MEMBERS) throw new LockArgumentError(`pool "${this.name}" has the maximum of ${MAX_MEMBERS} members`);
    this.#members.push(member);
  }

  /** Stops lending a member; a current holder keeps it until release. */
  remove(member: string): boolean {
    const at = this.#members.indexOf(member);
    if (at < 0) return false;
    this.#members.splice(at, 1);
    return true;
  }

  /** Waits up to `wait` ms for any free member. */
  async acquire(options?: PoolAcquireOptions): Promise<PoolLease> {
    return this.#take(options, false) as Promise<PoolLease>;
  }

  /** A free member right now, or null. */
  async tryAcquire(options?: Omit<PoolAcquireOptions, 'wait' | 'signal'>): Promise<PoolLease | null> {
    return this.#take(options, true);
  }

  async status(): Promise<MemberStatus[]> {
    return Promise.all(
      this.#members.map(async (member) => {
        const info = await this.#locks.inspect(this.#memberKey(member));
        return { member, held: info !== null && info.holders.length > 0, holders: info?.holders ?? [] };
      }),
    );
  }

  #memberKey(member: string): string {
    return `pool:${this.name}:${member}`;
  }

  async #take(options: PoolAcquireOptions | undefined, once: boolean): Promise<PoolLease | null> {
    const o = checkOptionNames(
      options,
      once ? ['ttl', 'autoRenew'] : ['ttl', 'wait', 'signal', 'autoRenew'],
      once ? 'pool.tryAcquire()' : 'pool.acquire()',
    );
    if (this.#members.length === 0) throw new LockArgumentError(`pool "${this.name}" has no members`, { key: this.name });
    const gate = this.#locks.semaphore(`pool:${this.name}`, { limit: this.#members.length });
    const started = performance.now();
    let permit: Lock | null;
    try {
      permit = once ? await gate.tryAcquire(o) : await gate.acquire(o);
    } catch (error) {
      if (error instanceof LockTimeoutError) this.#stats.timeouts += 1;
      throw error;
    }
    if (!permit) return null;
    if (performance.now() - started > 1) this.#stats.waited += 1;
    const memberOptions = {
      ...(o.ttl !== undefined ? { ttl: o.ttl } : {}),
      ...(o.autoRenew !== undefined ? { autoRenew: o.autoRenew } : {}),
    };
    try {
      // Holding a permit means a member is free, unless processes disagree on the member list or a
      // member lock outlived its permit; retry a few rounds before calling it a timeout.
      for (let round = 0; round < 20; round++) {
        for (const member of shuffled(this.#members)) {
          const lock = await this.#locks.tryAcquire(this.#memberKey(member), memberOptions as { ttl?: number; autoRenew?: boolean });
          if (lock) {
            this.#stats.acquired += 1;
            return new PoolLease(member, lock, permit, () => void (this.#stats.released += 1));
          }
        }
        await sleep(5 * (round + 1));
      }
      throw new LockTimeoutError(`pool "${this.name}": a permit was free but no member was (do all processes list the same members?)`, {
        key: this.name,
        waited: Math.round(performance.now() - started),
      });
    } catch (error) {
      await permit.release().catch((e: unknown) => this.#locks.reportError(e, { key: permit.key }));
      throw error;
    }
  }
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
