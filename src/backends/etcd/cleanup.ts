// Keys this instance must take away itself: a hold whose ttl ran out (its session lease would keep it
// while this process lives), and keys an attempt or a release may have left on the live session when
// its answer did not come. Each is a Hold with a deadline in Holds; at its deadline it is deleted,
// and a delete that fails is tried again while the session lives.

import { performance } from 'node:perf_hooks';
import type { CallOptions, KVClient } from './client.js';
import type { Guards } from './guard.js';
import { Hold, UNKNOWN, type Holds } from './holds.js';
import { keysFor, tag } from './keys.js';
import type { LineNotes } from './line.js';
import { retryDelay } from './retry.js';
import type { Lease } from './session.js';
import { deleteIf, deleteMine } from './txn.js';
import type { Wakeups } from './wake.js';

export interface CleanupParts {
  kv: KVClient;
  root: Buffer;
  holds: Holds;
  guards: Guards;
  wake: Wakeups;
  line: LineNotes;
  /** A call's options (its deadline). */
  call: () => CallOptions;
  /** The call timeout, ms: the backoff of failed deletes reaches it. */
  timeout: number;
  closed: () => boolean;
}

export class Cleanup {
  readonly #p: CleanupParts;
  /** Expires a hold (bound once: every hold keeps it). */
  readonly expire = (hold: Hold): void => this.#expired(hold);

  constructor(parts: CleanupParts) {
    this.#p = parts;
  }

  /** A hold's ttl ran out here: its key goes (if it is still the same key), waking the next in line. */
  #expired(hold: Hold): void {
    const { holds, guards, wake, line } = this.#p;
    holds.delete(hold.name, hold.owner, true);
    wake.disarm(hold.name, hold.owner);
    // The session lease is the fallback. A key of unknown revision is this owner's: no later attempt
    // of it replaced the hold, so nothing newer of it can be there.
    const guard = hold.unsure ? guards.of(hold.lease) : undefined;
    const sent = performance.now();
    const keys = keysFor(this.#p.root, hold.name, tag(hold.lease, hold.slot));
    const deleting =
      hold.fence === UNKNOWN
        ? deleteMine(this.#p.kv, keys, this.#p.call(), false, guard).then((r) => r.revision)
        : deleteIf(this.#p.kv, hold.key, hold.fence, this.#p.call(), guard);
    deleting.then(
      (revision) => {
        if (guard) guards.saw(hold.lease, revision);
        if (holds.get(hold.name, hold.owner)?.slot !== hold.slot) holds.free(hold.name, hold.slot);
        line.forget(hold.name, hold.owner);
        wake.wake(hold.name); // a waiter here behind this key does not watch it
      },
      () => {
        // Keys nobody will ever release must not stay: try again while their session lives (a key
        // past its ttl is no longer granted, even while its delete is still to go through).
        if (!hold.lease.lost && !this.#p.closed() && !holds.get(hold.name, hold.owner)) {
          hold.granted = false;
          hold.retries += 1;
          hold.deadline = performance.now() + retryDelay(hold.retries, sent, this.#p.timeout);
          holds.set(hold);
        }
      },
    );
  }

  /** Notes keys an attempt or a release may have left on the live session, to delete at `deadline`. */
  leftBehind(name: string, owner: string, key: Buffer, lease: Lease, slot: number, deadline: number, unsure: boolean): void {
    const fields = { name, owner, key, fence: UNKNOWN, lease, slot, limit: 0, granted: false, deadline, unsure };
    this.#p.holds.set(new Hold(fields, this.expire));
  }

  /** Forgets a hold whose key is gone; one a late create may still bring back waits for its guarded delete (guard.ts). */
  forget(hold: Hold, deadline: number): void {
    if (hold.unsure && !hold.lease.lost) this.leftBehind(hold.name, hold.owner, hold.key, hold.lease, hold.slot, deadline, true);
    else this.#p.holds.delete(hold.name, hold.owner);
  }
}
