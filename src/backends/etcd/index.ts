// Locks on etcd, the way its concurrency package builds them: one session lease per backend instance
// (session.ts), a key per holder or waiter under the lock's name, the lowest create revision holds
// (mutex.ts, shared.ts), a waiter watches the key just before its own (wake.ts), and the fence is the
// holder key's create revision: etcd's global revision, monotonic across restarts and leader
// changes with no clock involved. An uncontended acquire is one transaction, a release one more.

import type { AcquireRequest, AcquireResult, LeaseHolder, LockBackend, LockInfo } from '../../backend.js';
import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption, prefixOption } from '../shared/checks.js';
import { asClient, type CallOptions } from './client.js';
import { cleanupDelay, Hold, Holds } from './holds.js';
import { decodeValue, encodeValue, keysFor } from './keys.js';
import { exclusiveVerdict } from './mutex.js';
import { Session, type Lease } from './session.js';
import { holdsShared, sharedVerdict } from './shared.js';
import { deleteIf, deleteMine, enqueue, listKeys, listValues, rewrite, tryCreate, type Listing } from './txn.js';
import { Wakeups } from './wake.js';
import { LineNotes } from './line.js';
import { EtcdPools } from './pools.js';
import { EtcdRates } from './rate.js';

export interface EtcdBackendOptions {
  /** An `etcd3` client (`new Etcd3({ hosts })`) or one of its namespaces. Never closed by us. */
  client: unknown;
  /** Prepended to every key (default "locksmith/"). */
  prefix?: string;
  /**
   * The session lease's TTL in ms (whole seconds, default 60 000): how long after this process stops
   * (crash, pause, partition) its locks survive on etcd. A lock's ttl may not exceed it.
   */
  leaseTtl?: number;
  /** How long to wait for etcd's answer to one call (default 5000 ms; an acquire waits at most its ttl). */
  commandTimeout?: number;
}

/** The fence of a key an attempt may have written without an answer. */
const UNKNOWN = -1n;

/** A slot's key tail: the session lease's id and the slot. */
const tag = (lease: Lease, slot: number): string => `${lease.id}.${slot}`;

export function etcdBackend(options: EtcdBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['client', 'prefix', 'leaseTtl', 'commandTimeout'], 'etcdBackend()');
  const client = asClient(o.client);
  const prefix = prefixOption('etcdBackend()', o.prefix, 'locksmith/');
  const leaseTtl = msOption('etcdBackend()', 'leaseTtl', o.leaseTtl, 60_000, 1_000, 86_400_000);
  if (leaseTtl % 1000 !== 0) throw new LockArgumentError('etcdBackend(): leaseTtl must be a whole number of seconds (etcd leases are)');
  const timeout = msOption('etcdBackend()', 'commandTimeout', o.commandTimeout, 5_000, 1);

  const root = Buffer.concat([client.prefix, Buffer.from(prefix, 'utf8')]);
  const kv = client.kv;
  const call = (ms = timeout): CallOptions => ({ deadline: Date.now() + ms });
  const lossListeners: ((key: string, owner: string, reason: unknown) => void)[] = [];
  const wake = new Wakeups(client);
  const pools = new EtcdPools(
    client,
    root,
    () => call(),
    (pool) => wake.wake(pool),
  );
  const rate = new EtcdRates(client, root, () => call());
  const holds = new Holds();
  /** Waiters (name + "\n" + owner) refused once: their next attempt queues. */
  const tried = new Set<string>();
  const line = new LineNotes();
  let closed = false;
  const session = new Session(client.leaseClient, leaseTtl, timeout, (lease, reason) => {
    for (const hold of holds.dropLease(lease)) {
      wake.disarm(hold.name, hold.owner);
      line.forget(hold.name, hold.owner);
      if (hold.granted) for (const listener of lossListeners) listener(hold.name, hold.owner, reason);
    }
  });

  /** A hold's ttl ran out here: its key goes (if it is still the same key), waking the next in line. */
  const expire = (hold: Hold): void => {
    holds.delete(hold.name, hold.owner, true);
    wake.disarm(hold.name, hold.owner);
    // The session lease is the fallback. A key of unknown revision is this owner's: no later attempt
    // of it replaced the hold, so nothing newer of it can be there.
    const sent = performance.now();
    const deleting =
      hold.fence === UNKNOWN
        ? deleteMine(kv, keysFor(root, hold.name, tag(hold.lease, hold.slot)), call())
        : deleteIf(kv, hold.key, hold.fence, call());
    deleting.then(
      () => {
        if (holds.get(hold.name, hold.owner)?.slot !== hold.slot) holds.free(hold.name, hold.slot);
        line.forget(hold.name, hold.owner);
      },
      () => {
        // Keys nobody will ever release must not stay: try again while their session lives.
        if (hold.fence === UNKNOWN && !hold.lease.lost && !closed && !holds.get(hold.name, hold.owner)) {
          hold.retries += 1;
          hold.deadline = performance.now() + cleanupDelay(hold.retries, sent, timeout);
          holds.set(hold);
        }
      },
    );
  };

  function checkTtl(ttl: number, key: string): void {
    if (ttl > leaseTtl) {
      throw new LockArgumentError(
        `"${key}": ttl ${ttl} ms exceeds the etcd session's leaseTtl (${leaseTtl} ms), which bounds how long a lock is known to live`,
        { key },
      );
    }
  }

  async function attempt(req: AcquireRequest, lease: Lease, known: Hold | undefined, slot: number): Promise<AcquireResult> {
    const start = performance.now();
    const k = keysFor(root, req.key, tag(lease, slot));
    const mode = req.mode === 'exclusive' ? 'w' : 'r';
    const limit = req.mode === 'shared' ? (req.limit ?? 0) : 0;
    // A waiter takes its place in line once it heads this process's local queue (the core lets only
    // the head try; a key of one behind it would hold the line while its owner does not try), or from
    // its second attempt on. A reader-preference writer never queues: its key would hold new readers back.
    const id = `${req.key}\n${req.owner}`;
    const queue =
      req.queue === true &&
      !(req.mode === 'exclusive' && req.rw === 'reader-preference') &&
      (req.head === true || tried.has(id) || known !== undefined);
    const value = encodeValue(Date.now() + req.ttl, limit, req.owner);
    const o = call(Math.min(timeout, req.ttl));
    let listing: Listing;
    if (queue && known && !known.granted && known.fence !== UNKNOWN) {
      // The core wakes this waiter as a release here leaves: its answer tells where the waiter stands.
      await line.settled(req.key);
      listing = line.standing(known, wake.heard(req.key, req.owner)) ?? (await listKeys(kv, k, o));
    } else listing = queue ? await enqueue(kv, k, mode, value, lease.id, o) : await tryCreate(kv, k, mode, value, lease.id, o);
    const verdict = mode === 'w' ? exclusiveVerdict(listing.entries, k.mine.w) : sharedVerdict(listing.entries, k.mine.r, limit);
    line.seen(req.key, req.owner, verdict.granted ? undefined : verdict.me, listing);
    const me = verdict.me;
    const fields = { name: req.key, owner: req.owner, key: me?.key ?? k.mine[mode], fence: me?.create ?? UNKNOWN, lease, slot, limit };
    let revision = listing.revision;
    if (me && verdict.granted) {
      // The lock is valid only as long as its session is known to live: a grant reports that (which
      // may be less than the ttl), and only one that would be very short waits for a keep-alive.
      if (lease.validUntil - start < req.ttl / 2) await session.cover(lease, start + req.ttl);
      holds.set(new Hold({ ...fields, granted: true, deadline: start + req.ttl }, expire));
      tried.delete(id);
      wake.disarm(req.key, req.owner);
      return { granted: true, fence: me.create, validity: Math.min(req.ttl, lease.validUntil - start) };
    }
    if (!me && known) holds.delete(req.key, req.owner); // its key is gone (expired): the next attempt queues again
    if (me && !queue) {
      // A one-off shared try that found itself past the limit takes its key back.
      revision = await deleteIf(kv, me.key, me.create, o);
    } else if (me) {
      const wait = req.wait ?? Infinity;
      const deadline = wait === Infinity ? Infinity : start + wait + req.ttl;
      holds.set(new Hold({ ...fields, granted: false, deadline }, expire));
    }
    if (req.queue && (!queue || !me)) tried.add(id);
    // An attempt that left no key gives its slot back (in this same turn: a concurrent claim must not see it free).
    if (holds.get(req.key, req.owner)?.slot !== slot) holds.free(req.key, slot);
    wake.arm(req.key, req.owner, verdict.watch, { start: k.all, end: k.allEnd }, revision);
    return { granted: false };
  }

  return {
    name: 'etcd',
    capabilities: { shared: true, wake: true, fencing: true, expiry: 'ttl', fifo: true },

    async acquire(req: AcquireRequest): Promise<AcquireResult> {
      checkTtl(req.ttl, req.key);
      const lease = await session.lease();
      let known = holds.get(req.key, req.owner);
      if (known && known.lease !== lease) {
        holds.delete(req.key, req.owner); // its key went (or goes) with a lost session
        known = undefined;
      }
      const slot = known?.slot ?? holds.claim(req.key);
      try {
        return await attempt(req, lease, known, slot);
      } catch (error) {
        // No answer is not "not written": a transaction that timed out may have created the key on
        // the live session. Unless a later attempt of the owner records it, it goes after the ttl.
        if (!holds.get(req.key, req.owner)) {
          const key = keysFor(root, req.key, tag(lease, slot)).mine[req.mode === 'exclusive' ? 'w' : 'r'];
          holds.set(
            new Hold(
              {
                name: req.key,
                owner: req.owner,
                key,
                fence: UNKNOWN,
                lease,
                slot,
                limit: 0,
                granted: false,
                deadline: performance.now() + req.ttl,
              },
              expire,
            ),
          );
        }
        throw error;
      }
    },

    async extend(key, owner, ttl) {
      checkTtl(ttl, key);
      const hold = holds.get(key, owner);
      if (!hold?.granted || hold.lease.lost) return false;
      const start = performance.now();
      const value = encodeValue(Date.now() + ttl, hold.limit, owner);
      const [ok] = await Promise.all([
        rewrite(kv, hold.key, hold.fence, hold.lease.id, value, call(Math.min(timeout, ttl))),
        session.cover(hold.lease, start + ttl),
      ]);
      if (!ok || hold.lease.lost) {
        holds.delete(key, owner);
        return false;
      }
      hold.deadline = start + ttl;
      holds.set(hold);
      return true;
    },

    async release(key, owner) {
      tried.delete(`${key}\n${owner}`);
      wake.disarm(key, owner);
      // Only this instance's own keys can be this owner's: with no hold here it has none.
      const hold = holds.delete(key, owner, true);
      if (!hold) return false;
      const sent = performance.now();
      try {
        const deleted = await line.releasing(
          key,
          // Its own slot is still counted: another means a waiter here, which the line saves a read.
          deleteMine(kv, keysFor(root, key, tag(hold.lease, hold.slot)), call(), holds.count(key) > 1).then(({ deleted, after }) => {
            if (holds.get(key, owner)?.slot !== hold.slot) holds.free(key, hold.slot);
            line.released(key, owner, after, holds.busy(key));
            return deleted;
          }),
        );
        return deleted > 0 && hold.granted;
      } catch (error) {
        // Its keys stay on the live session, and a waiter's would hold the line for ever: try again later.
        if (!hold.lease.lost && !holds.get(key, owner)) {
          holds.set(
            new Hold(
              {
                name: key,
                owner,
                key: hold.key,
                fence: UNKNOWN,
                lease: hold.lease,
                slot: hold.slot,
                limit: 0,
                granted: false,
                deadline: performance.now() + cleanupDelay(0, sent, timeout),
              },
              expire,
            ),
          );
        }
        throw error;
      }
    },

    async inspect(key): Promise<LockInfo | null> {
      const entries = await listValues(kv, keysFor(root, key, ''), call());
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
    },

    waitForChange: (key, signal) => wake.listen(key, signal),
    pools,
    rate,

    onLost(listener) {
      lossListeners.push(listener);
    },

    async close() {
      closed = true;
      wake.close();
      pools.close();
      rate.close();
      holds.clear();
      tried.clear();
      line.clear();
      await session.close();
    },
  };
}
