// Locks on etcd, the way its concurrency package builds them: one session lease per backend instance
// (session.ts), a key per holder or waiter under the lock's name, the lowest create revision holds
// (mutex.ts, shared.ts), a waiter watches the key just before its own (wake.ts), and the fence is the
// holder key's create revision: etcd's global revision, monotonic across restarts and leader
// changes with no clock involved. An uncontended acquire is one transaction, a release one delete.

import { performance } from 'node:perf_hooks';
import type { AcquireRequest, AcquireResult, LeaseHolder, LockBackend, LockInfo } from '../../backend.js';
import { LockArgumentError } from '../../errors.js';
import type { CallOptions, KVClient } from './client.js';
import { Hold, Holds, UNKNOWN, waitEnd } from './holds.js';
import { retryDelay } from './retry.js';
import { decodeValue, encodeValue, keysFor, tag } from './keys.js';
import { Guards } from './guard.js';
import { exclusiveVerdict } from './mutex.js';
import { Session, type Lease } from './session.js';
import { holdsShared, sharedVerdict } from './shared.js';
import { deleteIf, deleteMine, listKeys, listValues, rewrite, type Listing } from './txn.js';
import { Handoffs } from './handoff.js';
import { Cleanup } from './cleanup.js';
import { Wakeups } from './wake.js';
import { LineNotes } from './line.js';
import { EtcdPools } from './pools.js';
import { EtcdRates } from './rate.js';
import { checkOptions, type EtcdBackendOptions } from './options.js';
import { plainBackend } from '../shared/plain.js';

export type { EtcdBackendOptions };

export function etcdBackend(options: EtcdBackendOptions): LockBackend {
  return plainBackend(new EtcdBackend(options));
}

class EtcdBackend implements LockBackend {
  readonly name = 'etcd';
  readonly capabilities = { shared: true, wake: true, fencing: true, expiry: 'ttl', fifo: true } as const;
  readonly pools: EtcdPools;
  readonly rate: EtcdRates;
  readonly #kv: KVClient;
  readonly #root: Buffer;
  readonly #leaseTtl: number;
  readonly #timeout: number;
  readonly #lossListeners: ((key: string, owner: string, reason: unknown) => void)[] = [];
  readonly #wake: Wakeups;
  readonly #holds = new Holds();
  /** Waiters (name + "\n" + owner) refused once: their next attempt queues. */
  readonly #tried = new Set<string>();
  readonly #line = new LineNotes();
  readonly #session: Session;
  readonly #guards: Guards;
  readonly #cleanup: Cleanup;
  readonly #handoffs: Handoffs;
  #closed = false;

  constructor(options: EtcdBackendOptions) {
    const { client, prefix, leaseTtl, timeout } = checkOptions(options);
    this.#leaseTtl = leaseTtl;
    this.#timeout = timeout;
    this.#root = Buffer.concat([client.prefix, Buffer.from(prefix, 'utf8')]);
    this.#kv = client.kv;
    this.#guards = new Guards(this.#root);
    this.#wake = new Wakeups(client, this.#root);
    const parts = { kv: this.#kv, root: this.#root, holds: this.#holds, guards: this.#guards, call: () => this.#call() };
    const closed = (): boolean => this.#closed;
    this.#cleanup = new Cleanup({ ...parts, wake: this.#wake, line: this.#line, timeout, closed });
    this.#handoffs = new Handoffs({ ...parts, cleanup: this.#cleanup });
    this.pools = new EtcdPools(
      client,
      this.#root,
      () => this.#call(),
      (pool) => this.#wake.wake(pool),
    );
    this.rate = new EtcdRates(client, this.#root, () => this.#call());
    this.#session = new Session(client.leaseClient, this.#leaseTtl, this.#timeout, (lease, reason) => {
      for (const hold of this.#holds.dropLease(lease)) {
        this.#wake.disarm(hold.name, hold.owner);
        this.#line.forget(hold.name, hold.owner);
        if (hold.granted) for (const listener of this.#lossListeners) listener(hold.name, hold.owner, reason);
        // Its waiters here, whose keys went with the session or which its release was to carry
        // (handoff.ts), try again on a new one (they watch no key of it).
        this.#wake.wake(hold.name);
      }
    });
  }

  #call(ms = this.#timeout): CallOptions {
    return { deadline: Date.now() + ms };
  }

  #checkTtl(ttl: number, key: string): void {
    if (ttl > this.#leaseTtl) {
      throw new LockArgumentError(
        `"${key}": ttl ${ttl} ms exceeds the etcd session's leaseTtl (${this.#leaseTtl} ms), which bounds how long a lock is known to live`,
        { key },
      );
    }
  }

  async #attempt(req: AcquireRequest, lease: Lease, known: Hold | undefined, slot: number): Promise<AcquireResult> {
    const start = performance.now();
    const k = keysFor(this.#root, req.key, tag(lease, slot));
    const mode = req.mode === 'exclusive' ? 'w' : 'r';
    const limit = req.mode === 'shared' ? (req.limit ?? 0) : 0;
    // A waiter takes its place in line once it heads this process's local queue (the core lets only
    // the head try; a key of one behind it would hold the line while its owner does not try), or from
    // its second attempt on. A reader-preference writer never queues: its key would hold new readers back.
    const id = `${req.key}\n${req.owner}`;
    const queue =
      req.queue === true &&
      !(req.mode === 'exclusive' && req.rw === 'reader-preference') &&
      (req.head === true || this.#tried.has(id) || known !== undefined);
    const value = encodeValue(Date.now() + req.ttl, limit, req.owner);
    const o = this.#call(Math.min(this.#timeout, req.ttl));
    if (queue && !known && mode === 'w' && this.#handoffs.defer(req, lease, k, value, start)) {
      this.#holds.free(req.key, slot);
      this.#wake.disarm(req.key, req.owner);
      return { granted: false };
    }
    if (queue) this.#handoffs.withdraw(req.key, req.owner);
    let listing: Listing;
    if (queue && known && !known.granted && known.fence !== UNKNOWN) {
      // The core wakes this waiter as a release here leaves: its answer tells where the waiter stands.
      await this.#line.settled(req.key);
      listing = this.#line.standing(known, this.#wake.heard(req.key, req.owner)) ?? (await listKeys(this.#kv, k, o));
    } else {
      // Another key of the name here, or a refusal before: busy, so take the place in line at once.
      // Otherwise expect it free, and send the least (claim() in txn.ts).
      const how = !queue ? 'try' : this.#holds.count(req.key) > 1 || this.#tried.has(id) ? 'line' : 'expect-free';
      listing = await this.#guards.create(this.#kv, how, k, mode, value, lease, o);
    }
    const verdict = mode === 'w' ? exclusiveVerdict(listing.entries, k.mine.w) : sharedVerdict(listing.entries, k.mine.r, limit);
    this.#line.seen(req.key, req.owner, verdict.granted ? undefined : verdict.me, listing);
    const me = verdict.me;
    const fields = { name: req.key, owner: req.owner, key: me?.key ?? k.mine[mode], fence: me?.create ?? UNKNOWN, lease, slot, limit };
    const unsure = known?.unsure === true;
    let revision = listing.revision;
    if (me && verdict.granted) {
      // The lock is valid only as long as its session is known to live: a grant reports that (which
      // may be less than the ttl), and only one that would be very short waits for a keep-alive.
      if (lease.validUntil - start < req.ttl / 2) await this.#session.cover(lease, start + req.ttl);
      this.#holds.set(new Hold({ ...fields, unsure, granted: true, deadline: start + req.ttl }, this.#cleanup.expire));
      this.#tried.delete(id);
      this.#wake.disarm(req.key, req.owner);
      return { granted: true, fence: me.create, validity: Math.min(req.ttl, lease.validUntil - start) };
    }
    if (!me && known) this.#cleanup.forget(known, known.deadline); // its key is gone (expired): the next attempt queues again
    if (me && !queue) {
      // A one-off shared try that found itself past the limit takes its key back.
      revision = await deleteIf(this.#kv, me.key, me.create, o);
    } else if (me) {
      this.#holds.set(new Hold({ ...fields, unsure, granted: false, deadline: waitEnd(req, start) }, this.#cleanup.expire));
    }
    if (req.queue && (!queue || !me)) this.#tried.add(id);
    // An attempt that left no key gives its slot back (in this same turn: a concurrent claim must not see it free).
    if (this.#holds.get(req.key, req.owner)?.slot !== slot) this.#holds.free(req.key, slot);
    // A key before ours on our own session goes only by this instance's release or expiry, which wake
    // waiters here, or with the session, which takes ours too: no watch (on a busy name, a watch
    // created and cancelled per handoff).
    if (me && verdict.watch?.lease === lease.id) this.#wake.disarm(req.key, req.owner);
    else this.#wake.arm(req.key, req.owner, verdict.watch?.key, { start: k.all, end: k.allEnd }, revision);
    return { granted: false };
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    this.#checkTtl(req.ttl, req.key);
    // A release on its way carries this waiter (handoff.ts): its answer tells where the waiter stands.
    if (this.#handoffs.carried(req.key, req.owner)) await this.#line.settled(req.key);
    const lease = await this.#session.lease();
    let known = this.#holds.get(req.key, req.owner);
    if (known && known.lease !== lease) {
      this.#holds.delete(req.key, req.owner); // its key went (or goes) with a lost session
      known = undefined;
    }
    const slot = known?.slot ?? this.#holds.claim(req.key);
    try {
      return await this.#attempt(req, lease, known, slot);
    } catch (error) {
      // No answer is not "not written": a transaction that timed out may have created the key on
      // the live session, or may yet (guard.ts). Unless a later attempt of the owner records it, it
      // goes after the ttl, and that delete moves the guard.
      const held = this.#holds.get(req.key, req.owner);
      if (held) held.unsure = true;
      else {
        const key = keysFor(this.#root, req.key, tag(lease, slot)).mine[req.mode === 'exclusive' ? 'w' : 'r'];
        this.#cleanup.leftBehind(req.key, req.owner, key, lease, slot, performance.now() + req.ttl, true);
      }
      throw error;
    }
  }

  async extend(key: string, owner: string, ttl: number): Promise<boolean> {
    this.#checkTtl(ttl, key);
    const hold = this.#holds.get(key, owner);
    if (!hold?.granted || hold.lease.lost) return false;
    const start = performance.now();
    const value = encodeValue(Date.now() + ttl, hold.limit, owner);
    const [ok] = await Promise.all([
      rewrite(this.#kv, hold.key, hold.fence, hold.lease.id, value, this.#call(Math.min(this.#timeout, ttl))),
      this.#session.cover(hold.lease, start + ttl),
    ]);
    if (!ok || hold.lease.lost) {
      this.#cleanup.forget(hold, performance.now());
      if (this.#handoffs.has(key)) this.#wake.wake(key); // its release will not carry a waiter now
      return false;
    }
    hold.deadline = start + ttl;
    this.#holds.set(hold);
    return true;
  }

  async release(key: string, owner: string): Promise<boolean> {
    this.#tried.delete(`${key}\n${owner}`);
    this.#wake.disarm(key, owner);
    this.#handoffs.withdraw(key, owner);
    // A waiter that gives up while a release on its way creates its key: that answer first.
    if (this.#handoffs.carried(key, owner)) await this.#line.settled(key);
    // Only this instance's own keys can be this owner's: with no hold here it has none.
    const hold = this.#holds.delete(key, owner, true);
    if (!hold) return false;
    const guard = hold.unsure ? this.#guards.of(hold.lease) : undefined;
    const sent = performance.now();
    const keys = keysFor(this.#root, key, tag(hold.lease, hold.slot));
    // Its own slot is still counted: another means a waiter here, which the line saves a read.
    const listAfter = this.#holds.count(key) > 1 || this.#handoffs.has(key);
    // A waiter here may be carried along (handoff.ts): woken either way, it enqueues itself if not.
    const carrying = this.#handoffs.release(hold, keys);
    try {
      const sending = carrying ?? deleteMine(this.#kv, keys, this.#call(), listAfter, guard, hold.fence === UNKNOWN ? undefined : hold.key);
      const deleted = await this.#line.releasing(
        key,
        sending.then((r) => {
          if (guard) this.#guards.saw(hold.lease, r.revision);
          if (this.#holds.get(key, owner)?.slot !== hold.slot) this.#holds.free(key, hold.slot);
          const busy = this.#holds.busy(key) || carrying !== undefined || this.#handoffs.has(key);
          this.#line.released(key, owner, r.after, busy);
          // The core wakes its own waiters as a release leaves; these are for those of another
          // Locksmith on this backend, which watch no key of this session.
          if (busy) this.#wake.wake(key);
          return r.deleted;
        }),
      );
      return deleted > 0 && hold.granted;
    } catch (error) {
      // Its keys stay on the live session, and a waiter's would hold the line for ever: try again later.
      if (!hold.lease.lost && !this.#holds.get(key, owner)) {
        this.#cleanup.leftBehind(
          key,
          owner,
          hold.key,
          hold.lease,
          hold.slot,
          performance.now() + retryDelay(0, sent, this.#timeout),
          hold.unsure,
        );
      }
      throw error;
    }
  }

  async inspect(key: string): Promise<LockInfo | null> {
    const entries = await listValues(this.#kv, keysFor(this.#root, key, ''), this.#call());
    const holders: LeaseHolder[] = [];
    let mode: LockInfo['mode'] = 'exclusive';
    entries.forEach((e, at) => {
      const { expiresAt, limit, owner } = decodeValue(e.value);
      const holds = e.mode === 'w' ? at === 0 : holdsShared(entries, at, limit);
      if (!holds) return;
      if (holders.length === 0) mode = e.mode === 'w' ? 'exclusive' : 'shared';
      holders.push({ owner, fence: e.create, expiresAt });
    });
    return holders.length ? { key, mode, holders } : null;
  }

  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return this.#wake.listen(key, signal);
  }

  onLost(listener: (key: string, owner: string, reason: unknown) => void): void {
    this.#lossListeners.push(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake.close();
    this.pools.close();
    this.rate.close();
    this.#holds.clear();
    this.#tried.clear();
    this.#line.clear();
    this.#handoffs.clear();
    await this.#session.close();
  }
}
