// One write per handoff. When this instance holds a name exclusively and the head of its local
// waiters tries, that waiter writes nothing: its key is created by the holder's release, in the same
// transaction as the holder's delete (HANDOFF in txn.ts), and the release's listing tells it where it
// stands (line.ts). Otherwise every handoff in one process costs two raft writes that overlap: the
// release, and the next waiter's enqueue made while the lock is held.
//
// Only this instance's release can carry the waiter, so a waiter is deferred only behind a hold of
// this instance that its release will carry it with (granted, exclusive, on the live session, fence
// known, no late create to guard against). When that holder goes any other way (ttl, lost session,
// a failed extend), the waiter is woken and takes its place in line itself. A release whose outcome
// is unknown leaves the waiter's key unsure, as an unanswered create does (guard.ts).

import { performance } from 'node:perf_hooks';
import type { AcquireRequest } from '../../backend.js';
import type { Cleanup } from './cleanup.js';
import type { CallOptions, KVClient } from './client.js';
import type { Guards } from './guard.js';
import { Hold, waitEnd, type Holds } from './holds.js';
import { keysFor, tag, type LockKeys } from './keys.js';
import type { Lease } from './session.js';
import { handOff } from './txn.js';

/** A head waiter whose key the next release of its name creates. */
interface Deferred {
  owner: string;
  /** Its key's value (keys.ts). */
  value: Buffer;
  /** performance.now() ms: the end of its wait plus its ttl, as for a waiter that enqueued itself. */
  deadline: number;
  /** Its ttl: how long a key of unknown outcome may stay before its cleanup. */
  ttl: number;
}

export interface HandoffParts {
  kv: KVClient;
  root: Buffer;
  holds: Holds;
  guards: Guards;
  cleanup: Cleanup;
  call: () => CallOptions;
}

const id = (name: string, owner: string): string => `${name}\n${owner}`;

/** Whether `hold` is one whose release can carry a waiter on `lease` (see the top). */
function carrier(hold: Hold, lease: Lease, writers: Buffer): boolean {
  return (
    hold.granted &&
    hold.lease === lease &&
    !lease.lost &&
    !hold.unsure &&
    hold.fence >= 0n &&
    hold.key.subarray(0, writers.length).equals(writers)
  );
}

export class Handoffs {
  readonly #p: HandoffParts;
  /** By name: at most one waiter per name. */
  readonly #waiting = new Map<string, Deferred>();
  /** Waiters (name + "\n" + owner) carried by a release not answered yet. */
  readonly #carried = new Set<string>();

  constructor(parts: HandoffParts) {
    this.#p = parts;
  }

  /**
   * Leaves the exclusive head waiter's key to the release of a holder here, when there is one and no
   * other waiter of the name is left to it already; true when it is.
   */
  defer(req: AcquireRequest, lease: Lease, k: LockKeys, value: Buffer, start: number): boolean {
    if (!this.#p.holds.find(req.key, (h) => h.owner !== req.owner && carrier(h, lease, k.writers))) return false;
    const there = this.#waiting.get(req.key);
    if (there && there.owner !== req.owner) return false;
    this.#waiting.set(req.key, { owner: req.owner, value, ttl: req.ttl, deadline: waitEnd(req, start) });
    return true;
  }

  /** The waiter of `name` goes another way (it enqueues itself, or gives up). */
  withdraw(name: string, owner: string): void {
    if (this.#waiting.get(name)?.owner === owner) this.#waiting.delete(name);
  }

  /** A waiter of `name` waits for a release here to carry it. */
  has(name: string): boolean {
    return this.#waiting.has(name);
  }

  /** Whether a release on its way carries (name, owner): its attempt or release waits for that answer. */
  carried(name: string, owner: string): boolean {
    return this.#carried.has(id(name, owner));
  }

  /**
   * The release of `hold` (keys `k`), carrying the name's waiter when there is one and `hold` can:
   * HANDOFF, whose answer records the waiter's key as a hold of its own. Undefined: a plain release.
   */
  release(hold: Hold, k: LockKeys): ReturnType<typeof handOff> | undefined {
    const { name, lease } = hold;
    const next = this.#waiting.get(name);
    if (!next || !carrier(hold, lease, k.writers)) return undefined;
    this.#waiting.delete(name);
    this.#carried.add(id(name, next.owner));
    const { holds, guards, cleanup } = this.#p;
    const slot = holds.claim(name);
    const key = keysFor(this.#p.root, name, tag(lease, slot)).mine.w;
    return handOff(this.#p.kv, k, hold.key, { key, value: next.value }, guards.of(lease), this.#p.call()).then(
      (r) => {
        this.#carried.delete(id(name, next.owner));
        const me = r.after.entries.find((e) => e.key.equals(key));
        if (me && !lease.lost) {
          const fields = { name, owner: next.owner, key, fence: me.create, lease, slot, limit: 0, granted: false };
          holds.set(new Hold({ ...fields, deadline: next.deadline }, cleanup.expire));
        } else {
          // Not created (the guard moved): the waiter, woken by this release, enqueues itself.
          if (r.after.guard !== undefined) guards.saw(lease, r.after.guard);
          holds.free(name, slot);
        }
        return r;
      },
      (error: unknown) => {
        this.#carried.delete(id(name, next.owner));
        if (lease.lost) holds.free(name, slot);
        else cleanup.leftBehind(name, next.owner, key, lease, slot, performance.now() + next.ttl, true);
        throw error;
      },
    );
  }

  clear(): void {
    this.#waiting.clear();
    this.#carried.clear();
  }
}
