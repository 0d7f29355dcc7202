// The backend's bookkeeping of the locks it holds: per name, which owner holds what, on which
// session, with which fence, until when. This, not the session, tells owners apart: PostgreSQL's
// session locks are reentrant, so a second owner of this process asking for a key its session holds
// would be granted it. Every grant attempt on a name is checked here first and runs alone per name
// (`serial`), so no two grants of one name from this process are ever in flight together.
//
// Expiry: a lease whose ttl passes without renewal is released on the server by this backend's one
// timer (set to the earliest deadline), whether or not its holder still runs renewals; extend and
// release then find nothing and return false.

import { performance } from 'node:perf_hooks';
import type { LeaseMode } from '../../backend.js';
import type { Session } from './session.js';
import { PerKey } from '../shared/serial.js';

export interface Hold {
  readonly key: string;
  readonly owner: string;
  readonly mode: LeaseMode;
  readonly session: Session;
  /** The advisory key locked: the name's, or a semaphore slot's. */
  readonly lockKey: bigint;
  readonly nameKey: bigint;
  readonly fence: bigint;
  /** The fence as the server sent it (the release sends it back). */
  readonly fenceText: string;
  /** A semaphore permit (an exclusive lock on a slot key; the semaphore is shared). */
  readonly permit: boolean;
  /** performance.now() after which the lease is over unless extended. */
  deadline: number;
}

export class Holds {
  readonly #byKey = new Map<string, Map<string, Hold>>();
  readonly #serial = new PerKey();
  readonly #onExpire: (hold: Hold) => void;
  readonly #onBusy: (busy: boolean) => void;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;

  /** `onBusy(true)` when the first hold is added, `onBusy(false)` when the last one goes. */
  constructor(onExpire: (hold: Hold) => void, onBusy: (busy: boolean) => void) {
    this.#onExpire = onExpire;
    this.#onBusy = onBusy;
  }

  get(key: string, owner: string): Hold | undefined {
    return this.#byKey.get(key)?.get(owner);
  }

  /** The holds on `key` (every owner of this process). */
  of(key: string): Iterable<Hold> {
    return this.#byKey.get(key)?.values() ?? [];
  }

  add(hold: Hold): void {
    if (this.#byKey.size === 0) this.#onBusy(true);
    let owners = this.#byKey.get(hold.key);
    if (!owners) this.#byKey.set(hold.key, (owners = new Map<string, Hold>()));
    owners.set(hold.owner, hold);
    hold.session.hold();
    this.#schedule(hold.deadline);
  }

  /** Forgets `hold`; false when it was gone already (released, expired or lost meanwhile). */
  remove(hold: Hold): boolean {
    const owners = this.#byKey.get(hold.key);
    if (owners?.get(hold.owner) !== hold) return false;
    owners.delete(hold.owner);
    if (owners.size === 0) this.#byKey.delete(hold.key);
    hold.session.unhold();
    if (this.#byKey.size === 0) this.#onBusy(false);
    return true;
  }

  /** A renewal moved `hold`'s deadline. */
  extended(hold: Hold, deadline: number): void {
    hold.deadline = Math.max(hold.deadline, deadline);
  }

  /** Every hold on `session` (when it died). */
  on(session: Session): Hold[] {
    const found: Hold[] = [];
    for (const owners of this.#byKey.values()) for (const h of owners.values()) if (h.session === session) found.push(h);
    return found;
  }

  all(): Hold[] {
    return [...this.#byKey.values()].flatMap((owners) => [...owners.values()]);
  }

  /** Runs `attempt` after any attempt on `key` already in flight from this process. */
  serial<T>(key: string, attempt: () => Promise<T>): Promise<T> {
    return this.#serial.run(key, attempt);
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (this.#byKey.size > 0) this.#onBusy(false);
    this.#byKey.clear();
  }

  #schedule(at: number): void {
    if (at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, Math.ceil(at - performance.now())));
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const h of this.all()) {
      if (h.deadline <= now) {
        if (this.remove(h)) this.#onExpire(h);
      } else next = Math.min(next, h.deadline);
    }
    if (next < Infinity) this.#schedule(next);
  }
}
