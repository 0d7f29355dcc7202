// What this backend instance has on etcd: each (name, owner) key it holds or queued with, and when its
// Locksmith ttl ends. The session lease keeps every key alive while this process lives; a key whose
// ttl passes without an extend is deleted here (one timer for all, the core's Deadlines), so a lock
// does not outlive its ttl while its process runs, and not its session lease once the process is gone.

import { Deadlines } from '../../core/deadlines.js';
import type { Lease } from './session.js';

/** The fence of a key an attempt may have written without an answer. */
export const UNKNOWN = -1n;

/**
 * When a waiter's key, made by an attempt started at `start` (performance.now() ms), goes if nobody
 * releases it: the end of its wait plus its ttl (Infinity: it waits as long as its session lives).
 */
export const waitEnd = (req: { wait?: number | undefined; ttl: number }, start: number): number => {
  const wait = req.wait ?? Infinity;
  return wait === Infinity ? Infinity : start + wait + req.ttl;
};

export class Hold {
  readonly name: string;
  readonly owner: string;
  readonly key: Buffer;
  readonly fence: bigint;
  readonly lease: Lease;
  /** Which of the name's slots its key uses (keys.ts). */
  readonly slot: number;
  /** A semaphore's limit (0: none), written into the key's value for inspect. */
  readonly limit: number;
  granted: boolean;
  /** performance.now() ms; Infinity: lives with the session (a waiter with no end to its wait). */
  deadline: number;
  /** Failed deletes of a key left behind (its release or its expiry failed), for the backoff. */
  retries = 0;
  /** An attempt of this slot went unanswered: a late create may still land, so its delete moves the guard (guard.ts). */
  unsure: boolean;
  /** Kept by the Deadlines that watch it (Expiring). */
  deadlineIndex = -1;
  readonly #expire: (hold: Hold) => void;

  constructor(
    fields: {
      name: string;
      owner: string;
      key: Buffer;
      fence: bigint;
      lease: Lease;
      slot: number;
      limit: number;
      granted: boolean;
      deadline: number;
      unsure?: boolean;
    },
    expire: (hold: Hold) => void,
  ) {
    this.name = fields.name;
    this.owner = fields.owner;
    this.key = fields.key;
    this.fence = fields.fence;
    this.lease = fields.lease;
    this.slot = fields.slot;
    this.limit = fields.limit;
    this.granted = fields.granted;
    this.deadline = fields.deadline;
    this.unsure = fields.unsure === true;
    this.#expire = expire;
  }

  expire(): void {
    this.#expire(this);
  }
}

export class Holds {
  readonly #byId = new Map<string, Hold>();
  /** The same holds by name (a name's holders and waiters here). */
  readonly #byName = new Map<string, Set<Hold>>();
  readonly #deadlines = new Deadlines<Hold>();
  /** Slots in use per name: by a hold, or by an attempt in flight. */
  readonly #slots = new Map<string, Set<number>>();

  /** The lowest free slot of `name`, now in use until free()d. */
  claim(name: string): number {
    let used = this.#slots.get(name);
    if (!used) this.#slots.set(name, (used = new Set()));
    let slot = 0;
    while (used.has(slot)) slot += 1;
    used.add(slot);
    return slot;
  }

  free(name: string, slot: number): void {
    const used = this.#slots.get(name);
    if (used?.delete(slot) && used.size === 0) this.#slots.delete(name);
  }

  #use(name: string, slot: number): void {
    let used = this.#slots.get(name);
    if (!used) this.#slots.set(name, (used = new Set()));
    used.add(slot);
  }

  /** Some key of `name` is held or queued here. */
  busy(name: string): boolean {
    return this.#slots.has(name);
  }

  /** How many of `name`'s keys are held or queued here. */
  count(name: string): number {
    return this.#slots.get(name)?.size ?? 0;
  }

  /** The first of `name`'s holds here that `test` accepts. */
  find(name: string, test: (hold: Hold) => boolean): Hold | undefined {
    for (const hold of this.#byName.get(name) ?? []) if (test(hold)) return hold;
    return undefined;
  }

  #unindex(hold: Hold): void {
    const named = this.#byName.get(hold.name);
    if (named?.delete(hold) && named.size === 0) this.#byName.delete(hold.name);
  }

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
    if (old) {
      this.#deadlines.unwatch(old);
      this.#unindex(old);
      if (old.slot !== hold.slot) this.free(old.name, old.slot);
    }
    this.#use(hold.name, hold.slot);
    this.#byId.set(id, hold);
    let named = this.#byName.get(hold.name);
    if (!named) this.#byName.set(hold.name, (named = new Set()));
    named.add(hold);
    this.#deadlines.watch(hold);
    return hold;
  }

  /**
   * Forgets the hold of (name, owner). Its slot is freed too unless `keepSlot`: a key still on etcd
   * must be gone before its slot is reused, or a new owner would find it and take it for its own.
   */
  delete(name: string, owner: string, keepSlot = false): Hold | undefined {
    const id = `${name}\n${owner}`;
    const hold = this.#byId.get(id);
    if (hold) {
      this.#byId.delete(id);
      this.#deadlines.unwatch(hold);
      this.#unindex(hold);
      if (!keepSlot) this.free(name, hold.slot);
    }
    return hold;
  }

  /** Forgets every hold on `lease` (it was lost; new keys carry the new lease's id) and returns them. */
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
