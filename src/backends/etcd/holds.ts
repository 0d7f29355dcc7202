// What this backend instance has on etcd: each (name, owner) key it holds or queued with, and when its
// Locksmith ttl ends. The session lease keeps every key alive while this process lives; a key whose
// ttl passes without an extend is deleted here (one timer for all, the core's Deadlines), so a lock
// does not outlive its ttl while its process runs, and not its session lease once the process is gone.

import { Deadlines } from '../../watchdog.js';
import type { Lease } from './session.js';

export class Hold {
  readonly name: string;
  readonly owner: string;
  readonly key: Buffer;
  readonly fence: bigint;
  readonly lease: Lease;
  /** A semaphore's limit (0: none), written into the key's value for inspect. */
  readonly limit: number;
  granted: boolean;
  /** performance.now() ms; Infinity: lives with the session (a waiter with no end to its wait). */
  deadline: number;
  readonly #expire: (hold: Hold) => void;

  constructor(fields: { name: string; owner: string; key: Buffer; fence: bigint; lease: Lease; limit: number; granted: boolean; deadline: number }, expire: (hold: Hold) => void) {
    this.name = fields.name;
    this.owner = fields.owner;
    this.key = fields.key;
    this.fence = fields.fence;
    this.lease = fields.lease;
    this.limit = fields.limit;
    this.granted = fields.granted;
    this.deadline = fields.deadline;
    this.#expire = expire;
  }

  expire(): void {
    this.#expire(this);
  }
}

export class Holds {
  readonly #byId = new Map<string, Hold>();
  readonly #deadlines = new Deadlines<Hold>();

  get(name: string, owner: string): Hold | undefined {
    return this.#byId.get(`${name}\n${owner}`);
  }

  /** Records `hold`, or moves the deadline of the one recorded for its key. */
  set(hold: Hold): Hold {
    const id = `${hold.name}\n${hold.owner}`;
    const old = this.#byId.get(id);
    if (old && old.key.equals(hold.key) && old.fence === hold.fence) {
      old.granted ||= hold.granted;
      old.deadline = hold.deadline;
      this.#deadlines.moved(old);
      return old;
    }
    if (old) this.#deadlines.unwatch(old);
    this.#byId.set(id, hold);
    this.#deadlines.watch(hold);
    return hold;
  }

  delete(name: string, owner: string): Hold | undefined {
    const id = `${name}\n${owner}`;
    const hold = this.#byId.get(id);
    if (hold) {
      this.#byId.delete(id);
      this.#deadlines.unwatch(hold);
    }
    return hold;
  }

  /** Forgets every hold on `lease` (it was lost) and returns them. */
  dropLease(lease: Lease): Hold[] {
    const gone = [...this.#byId.values()].filter((h) => h.lease === lease);
    for (const h of gone) this.delete(h.name, h.owner);
    return gone;
  }

  clear(): void {
    for (const h of [...this.#byId.values()]) this.delete(h.name, h.owner);
  }

  get size(): number {
    return this.#byId.size;
  }
}
