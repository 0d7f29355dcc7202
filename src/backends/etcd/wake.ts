// Wake-ups. A refused attempt arms one watch for its (name, owner): on the key just before it, or on
// the whole name when any delete may help. The watch starts at the revision after the refusal's
// listing, so a delete between that read and the watch's creation is still delivered. All watches
// share the client's one watch stream; there is at most one per waiting owner, gone when it is
// granted, gives up, or its watch fires.
//
// etcd3 ends its watch stream when the last watcher goes and opens a new one for the next watch: on
// one contended name that is a stream per handoff (HTTP/2 stream set-up and reset, a CANCELLED
// error with its stack, a new watch stream on the server). One idle watch, on a key no lock uses and
// nothing writes, keeps the stream open from the first wait until close().

import { Wakers } from '../shared/wakers.js';
import type { EtcdClient, Watcher } from './client.js';

interface Armed {
  name: string;
  owner: string;
  target: string;
  watcher: Watcher;
}

export class Wakeups {
  readonly #client: EtcdClient;
  /** Waits by lock name (waitForChange), all woken together. */
  readonly #wakers = new Wakers();
  /** By name + "\n" + owner: an owner has no control characters, so the last newline splits them. */
  readonly #watches = new Map<string, Armed>();
  /** Owners (same ids) whose watch on one key heard that key deleted, not yet asked about (heard()). */
  readonly #heard = new Set<string>();
  /** `<root>%wake`: never a lock's key (a name's '%' is escaped) and never written. */
  readonly #anchorKey: Buffer;
  #anchor: Watcher | undefined;
  #closed = false;

  constructor(client: EtcdClient, root: Buffer) {
    this.#client = client;
    this.#anchorKey = Buffer.concat([root, Buffer.from('%wake')]);
  }

  /** The idle watch that keeps the client's watch stream open (see the top of this file). */
  #anchored(): void {
    if (this.#anchor) return;
    const anchor = this.#client.watch().key(this.#anchorKey.subarray(this.#client.prefix.length)).only('delete').watcher();
    // Cancelled by etcd (it never should be): the next arm() makes another.
    anchor.on('error', () => {
      if (this.#anchor === anchor) this.#anchor = undefined;
    });
    this.#anchor = anchor;
  }

  /** Resolves on the next wake-up of `name`, or when `signal` aborts. */
  listen(name: string, signal: AbortSignal): Promise<void> {
    return this.#closed ? Promise.resolve() : this.#wakers.wait(name, signal);
  }

  /** Wakes `name`'s waiters here (a change this backend heard of another way: a pool's watch). */
  wake(name: string): void {
    this.#wakers.wake(name);
  }

  /**
   * Watches for the delete of `key` (or of any key in [start, end) when `key` is undefined) after
   * `revision`, then wakes `name`'s waiters. Keeps a watch already armed on the same target.
   */
  arm(name: string, owner: string, key: Buffer | undefined, range: { start: Buffer; end: Buffer }, revision: string): void {
    if (this.#closed) return;
    const id = `${name}\n${owner}`;
    const ns = this.#client.prefix.length;
    const target = key ? key.toString('hex') : `*${range.start.toString('hex')}`;
    if (this.#watches.get(id)?.target === target) return;
    this.disarm(name, owner);
    this.#anchored();
    let builder = this.#client.watch();
    builder = key ? builder.key(key.subarray(ns)) : builder.inRange({ start: range.start.subarray(ns), end: range.end.subarray(ns) });
    const watcher = builder
      .only('delete')
      .startRevision((BigInt(revision) + 1n).toString())
      .watcher();
    const fire = (deleted: boolean): void => {
      if (this.#watches.get(id)?.watcher === watcher) {
        this.disarm(name, owner);
        if (deleted && key) this.#heard.add(id);
      }
      this.#wakers.wake(name);
    };
    watcher.on('delete', () => fire(true));
    // A watch etcd cancels (say, its revision was compacted) wakes the waiter, whose next attempt arms anew.
    watcher.on('error', () => fire(false));
    this.#watches.set(id, { name, owner, target, watcher });
  }

  /** Whether the one key `owner` watched on `name` was deleted since it was armed (asking forgets it). */
  heard(name: string, owner: string): boolean {
    return this.#heard.delete(`${name}\n${owner}`);
  }

  /** Cancels the owner's watch, and forgets what it heard. */
  disarm(name: string, owner: string): void {
    const id = `${name}\n${owner}`;
    this.#heard.delete(id);
    const armed = this.#watches.get(id);
    if (!armed) return;
    this.#watches.delete(id);
    armed.watcher.cancel().catch(() => undefined);
  }

  close(): void {
    this.#closed = true;
    this.#heard.clear();
    for (const { name, owner } of [...this.#watches.values()]) this.disarm(name, owner);
    this.#anchor?.cancel().catch(() => undefined);
    this.#anchor = undefined;
    this.#wakers.wakeAll();
  }
}
