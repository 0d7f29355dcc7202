// A create that timed out is not a create that failed: a member that took it and then stopped
// (SIGSTOP, a long GC, a full disk) may commit it any time later, while the session lease lives. The
// cleanup of that attempt may have gone through on another member before it, deleting nothing, and
// freed its slot; the late key is then first in line, on a live session, with no hold here to delete
// it: every waiter of the name stalls until this process ends.
//
// So every create of a session compares a guard key's mod revision with the one this instance knows,
// and a cleanup of an attempt whose outcome is unknown rewrites the guard in the same transaction as
// its delete. A late create then lands either before that cleanup (its key is deleted by it) or after
// (its compare fails). The guard lives on the session lease, so it goes with it; a cleanup whose
// answer was lost leaves the known revision behind, and the next create learns the guard's revision
// from its failure branch and goes again once.

import type { CallOptions, KVClient } from './client.js';
import type { LockKeys, Mode } from './keys.js';
import type { Lease } from './session.js';
import { claim, enqueue, tryCreate, type Guard, type Listing } from './txn.js';

export class Guards {
  readonly #root: Buffer;
  readonly #known = new WeakMap<Lease, Guard>();

  constructor(root: Buffer) {
    this.#root = root;
  }

  #entry(lease: Lease): Guard {
    let guard = this.#known.get(lease);
    if (!guard) {
      // '%' is escaped in lock names, so no name's keys start with "%guard/" (pools and rates: "%pool/", "%rate/").
      guard = { key: Buffer.concat([this.#root, Buffer.from(`%guard/${lease.id}`, 'utf8')]), rev: '0', lease: lease.id };
      this.#known.set(lease, guard);
    }
    return guard;
  }

  /** The guard of `lease`, with the revision known now (a copy: a create compares what it sent). */
  of(lease: Lease): Guard {
    return { ...this.#entry(lease) };
  }

  /** The guard of `lease` was at `rev` (a cleanup wrote it, or a create's failure branch read it). */
  saw(lease: Lease, rev: string): void {
    const known = this.#entry(lease);
    if (BigInt(rev) > BigInt(known.rev)) known.rev = rev;
  }

  /**
   * Takes the name or a place in line (txn.ts), once more if a cleanup here moved the guard under it.
   * `how`: 'line' enqueues at once (a name known busy), 'expect-free' claims and enqueues when refused,
   * 'try' leaves nothing behind when refused.
   */
  async create(
    kv: KVClient,
    how: 'line' | 'expect-free' | 'try',
    k: LockKeys,
    mode: Mode,
    value: Buffer,
    lease: Lease,
    o: CallOptions,
  ): Promise<Listing> {
    for (let again = false; ; again = true) {
      const guard = this.of(lease);
      const listing =
        how === 'line'
          ? await enqueue(kv, k, value, guard, o, k.mine[mode])
          : mode === 'w'
            ? await claim(kv, k, value, guard, how === 'expect-free', o)
            : await (how === 'try' ? tryCreate : enqueue)(kv, k, value, guard, o);
      if (listing.guard === undefined || listing.guard === guard.rev || again) return listing;
      this.saw(lease, listing.guard);
    }
  }
}
