// What this instance knows of a name's line without asking etcd again, to save a waiter its read (a
// round trip) when the lock passes to it. Two facts stay true once read, because create revisions
// only grow and no key is ever created ahead of one already waiting:
//   - a key that is first (or within a semaphore's limit) stays so until it goes, so any listing
//     that has the waiter's key answers where it stands; this instance's release lists the line as
//     its delete left it, in the same transaction, and a waiter woken as that release leaves waits
//     for its answer rather than reading the line before the delete is through;
//   - an exclusive waiter that was second in line, and whose watch on the one key before it heard
//     that key deleted, is first.

import type { Hold } from './holds.js';
import type { Entry } from './keys.js';
import type { Listing } from './txn.js';

const id = (name: string, owner: string): string => `${name}\n${owner}`;

export class LineNotes {
  /** The line as this instance's last release of a name left it, while a key here is in it. */
  readonly #after = new Map<string, Listing>();
  /** Exclusive waiters second in line at their last listing: their own entry, and that listing's revision. */
  readonly #second = new Map<string, { entry: Entry; revision: string }>();
  /** Releases of a name on their way (their transaction not answered yet). */
  readonly #releasing = new Map<string, Promise<unknown>>();

  /** Notes `release` (which calls released() once answered) as on its way, and returns it. */
  releasing<T>(name: string, release: Promise<T>): Promise<T> {
    const pending = release.finally(() => {
      if (this.#releasing.get(name) === pending) this.#releasing.delete(name);
    });
    this.#releasing.set(name, pending);
    return pending;
  }

  /** Settles once the release of `name` on its way (if any) is answered; never rejects. */
  settled(name: string): Promise<unknown> | undefined {
    return this.#releasing.get(name)?.catch(() => undefined);
  }

  /** Where `known` (a waiter in line) stands, when known here without a read; `heard`: its watched key went. */
  standing(known: Hold, heard: boolean): Listing | undefined {
    const second = this.#second.get(id(known.name, known.owner));
    const after = this.#after.get(known.name);
    this.#after.delete(known.name);
    if (heard && second?.entry.create === known.fence) return { wrote: false, revision: second.revision, entries: [second.entry] };
    return after?.entries.some((e) => e.create === known.fence && e.key.equals(known.key)) ? after : undefined;
  }

  /** An attempt's listing: `waiting` is the owner's own entry when it stays in line. */
  seen(name: string, owner: string, waiting: Entry | undefined, listing: Listing): void {
    if (waiting?.mode === 'w' && listing.entries[1] === waiting)
      this.#second.set(id(name, owner), { entry: waiting, revision: listing.revision });
    else this.#second.delete(id(name, owner));
  }

  /** This instance's release left `after`; `busy`: another key of the name is held or queued here. */
  released(name: string, owner: string, after: Listing, busy: boolean): void {
    this.#second.delete(id(name, owner));
    if (busy) this.#after.set(name, after);
    else this.#after.delete(name);
  }

  /** The owner's key on `name` is gone (expired, or its session lost). */
  forget(name: string, owner: string): void {
    this.#second.delete(id(name, owner));
    this.#after.delete(name);
  }

  clear(): void {
    this.#releasing.clear();
    this.#after.clear();
    this.#second.clear();
  }
}
