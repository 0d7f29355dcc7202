// Leader election on one lock, the way etcd's concurrency.Election works on a lease: campaigning is
// waiting for the lock, leadership is holding it (renewed by the watchdog), and losing the lease is
// being demoted. The candidate's value travels in the lock's owner, so leader() can read it back.

import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { LockArgumentError, type LockExpiredError } from '../errors.js';
import type { Lock } from '../lock.js';
import type { Locks } from './locks.js';
import { checkKey, checkOptionNames } from '../options.js';

export interface ElectionOptions {
  /** This candidate's value, shown to everyone through leader() (at most 200 characters). */
  value: string;
  /** Leadership lease in ms (renewed every ttl/3); a dead leader is replaced within about this long. */
  ttl?: number;
}

export interface CampaignOptions {
  signal?: AbortSignal;
}

export interface Leader {
  value: string;
  fence: bigint;
  expiresAt: number;
}

export interface ElectionEvents {
  elected: (leader: Leader) => void;
  demoted: (reason: LockExpiredError | 'resigned') => void;
}

export interface ElectionStats {
  elected: number;
  demoted: number;
  resigned: number;
}

const MAX_VALUE = 200;
const SEPARATOR = '#';

export class Election {
  readonly name: string;
  readonly value: string;
  readonly #locks: Locks;
  readonly #ttl: number | undefined;
  readonly #events = new EventEmitter();
  readonly #stats: ElectionStats = { elected: 0, demoted: 0, resigned: 0 };
  #lock: Lock | undefined;

  constructor(locks: Locks, name: string, options: ElectionOptions) {
    this.#locks = locks;
    this.name = checkKey(name, 'election name');
    const o = checkOptionNames(options, ['value', 'ttl'], 'election()');
    // eslint-disable-next-line no-control-regex
    if (typeof o.value !== 'string' || o.value.length === 0 || o.value.length > MAX_VALUE || /[\u0000-\u001f\u007f]/.test(o.value)) {
      throw new LockArgumentError(`election(): value must be a string of 1 to ${MAX_VALUE} characters without control characters`, {
        key: name,
      });
    }
    this.value = o.value;
    this.#ttl = o.ttl as number | undefined; // validated by acquire, before any I/O
    locks.register('elections', this.name, this);
  }

  get isLeader(): boolean {
    return this.#lock?.held === true;
  }

  /** The fencing token of the current term, while leader: pass it to what the leader writes. */
  get fence(): bigint | undefined {
    return this.isLeader ? this.#lock?.fence : undefined;
  }

  /** When the current term's lease ends unless renewed (epoch ms); undefined when not leader. */
  get expiresAt(): number | undefined {
    return this.isLeader ? this.#lock?.expiresAt : undefined;
  }

  /** Aborts when this term ends (demoted or resigned); undefined when not leader. */
  get signal(): AbortSignal | undefined {
    return this.#lock?.signal;
  }

  stats(): ElectionStats {
    return { ...this.#stats };
  }

  /** Resolves when elected; waits as long as it takes, or until `signal` aborts. */
  async campaign(options?: CampaignOptions): Promise<Leader> {
    const o = checkOptionNames(options, ['signal'], 'campaign()');
    if (this.isLeader) return this.#describe(this.#lock!);
    // A unique suffix keeps two candidates with the same value from sharing one lease.
    const lock = await this.#locks.acquire(this.#key, {
      wait: Infinity,
      autoRenew: true,
      owner: `${this.value}${SEPARATOR}${randomUUID().slice(0, 12)}`,
      ...(o.signal !== undefined ? { signal: o.signal as AbortSignal } : {}),
      ...(this.#ttl !== undefined ? { ttl: this.#ttl } : {}),
    });
    this.#lock = lock;
    this.#stats.elected += 1;
    lock.signal.addEventListener('abort', () => {
      if (this.#lock !== lock) return;
      this.#lock = undefined;
      this.#stats.demoted += 1;
      this.#emit('demoted', lock.signal.reason as LockExpiredError);
    });
    const leader = this.#describe(lock);
    this.#emit('elected', leader);
    return leader;
  }

  /** Steps down: the next candidate is elected at once. */
  async resign(): Promise<void> {
    const lock = this.#lock;
    if (!lock) return;
    this.#lock = undefined;
    this.#stats.resigned += 1;
    // The term ends when we step down, before the release is sent: the next leader can be elected
    // (and say so) before our release is confirmed, as PostgreSQL grants a waiting session at once.
    this.#emit('demoted', 'resigned');
    await lock.release();
  }

  /** The current leader's value and fence, whoever it is, or null when there is none. */
  async leader(): Promise<Leader | null> {
    const info = await this.#locks.inspect(this.#key);
    const holder = info?.holders[0];
    if (!holder) return null;
    const cut = holder.owner.lastIndexOf(SEPARATOR);
    return { value: cut >= 0 ? holder.owner.slice(0, cut) : holder.owner, fence: holder.fence, expiresAt: holder.expiresAt };
  }

  on<E extends keyof ElectionEvents>(event: E, listener: ElectionEvents[E]): this {
    this.#events.on(event, listener);
    return this;
  }

  off<E extends keyof ElectionEvents>(event: E, listener: ElectionEvents[E]): this {
    this.#events.off(event, listener);
    return this;
  }

  get #key(): string {
    return `election:${this.name}`;
  }

  #describe(lock: Lock): Leader {
    return { value: this.value, fence: lock.fence, expiresAt: lock.expiresAt };
  }

  #emit(event: keyof ElectionEvents, payload: unknown): void {
    try {
      this.#events.emit(event, payload);
    } catch (error) {
      this.#locks.reportError(error, { key: this.#key });
    }
  }
}
