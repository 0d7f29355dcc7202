// Locks on PostgreSQL session advisory locks, many on a few connections. One backend instance keeps a
// small set of lock sessions (sessions.ts, session.ts), each holding any number of its locks; who
// holds what is its own bookkeeping (holds.ts); waiters hold no connection of their own but are woken
// by NOTIFY through one wake-up connection (wakeup.ts); fences come from a schema-qualified sequence
// the backend owns (fence.ts); every statement is in sql.ts.
//
// The lease's ttl, honestly: a lease not renewed within its ttl is released by this backend's timer
// (and refused on extend). If the process stops talking to the server (paused, partitioned), its
// sessions are ended by the server after their idle_session_timeout, at least the ttl of each lock on
// them and, with few distinct ttls, exactly it: the lock is then gone within that time of the last
// statement its session sent. A dead process's locks go at once, with its connections.

import type { AcquireRequest, AcquireResult, LockBackend, LockInfo } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption } from '../shared/checks.js';
import { isPool, isMissingRelation, run } from './client.js';
import { ensureSequence, fenceSequence } from './fence.js';
import { postgresRate } from './rate.js';
import { postgresPools } from './pools.js';
import { Holds, type Hold } from './holds.js';
import { holdersOf, MAX_SLOTS, Questions } from './inspect.js';
import { intentKey } from './keys.js';
import type { Session } from './session.js';
import { Sessions, type ConnectBound } from './sessions.js';
import { GRANT_PERMIT, GRANT_SHARED_UNLESS_INTENT, INSPECT } from './sql.js';
import { Wakeup } from './wakeup.js';
import { Names } from './names.js';

export { advisoryKey } from './keys.js';
export { MAX_SLOTS } from './inspect.js';
export { withTransactionLock, type TransactionLockOptions, type TransactionLock } from './transaction.js';
export type { PgClientLike, PgPoolLike, Row } from './client.js';

export interface PostgresBackendOptions {
  /** A pg `Pool`. Never ended by us; we keep at most a quarter of it (1 to 4 connections) for locks, plus one while anything waits. */
  pool: unknown;
  /** The fence sequence's schema (default "public"); the backend creates the sequence there. */
  schema?: string;
  /** The fence sequence (default "locksmith_fence"), created on first use (UNLOGGED); refused when another role owns it. */
  sequence?: string;
  /**
   * The advisory key of a lock name (default: `advisoryKey`, a SHA-256 prefix). Give e.g.
   * `(name) => BigInt(name)` to share keys with code that calls pg_advisory_lock(42) itself.
   */
  key?: (name: string) => bigint;
  /** How long an acquire with no (or a longer) `wait` waits for a connection from the pool (default 5000 ms). */
  connectTimeout?: number;
}

export function postgresBackend(options: PostgresBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['pool', 'schema', 'sequence', 'key', 'connectTimeout'], 'postgresBackend()');
  if (!isPool(o.pool)) throw new LockArgumentError('postgresBackend(): pool must be a pg Pool');
  const seq = fenceSequence('postgresBackend()', o.schema, o.sequence);
  if (o.key !== undefined && typeof o.key !== 'function')
    throw new LockArgumentError('postgresBackend(): key must be a function from a lock name to a bigint');
  const customKey = o.key as ((name: string) => bigint) | undefined;
  const connectTimeout = msOption('postgresBackend()', 'connectTimeout', o.connectTimeout, 5_000, 1);

  const lostListeners: ((key: string, owner: string, reason: unknown) => void)[] = [];
  /** The session each name was last released on (reused next, for its prepared statements). */
  const lastSession = new Map<string, Session>();
  const names = new Names(customKey);
  let closed = false;
  let ready: Promise<void> | undefined;
  /** `ready` settled well: attempts need not wait on it. */
  let prepared = false;

  /** The lease on a session that died is gone: exactly the holds on it are lost. */
  const sessionDied = (session: Session, reason: unknown): void => {
    for (const h of holds.on(session)) {
      if (!holds.remove(h)) continue;
      wakeup.wake(h.nameKey);
      for (const l of lostListeners) l(h.key, h.owner, reason);
    }
  };
  const sessions = new Sessions({ pool: o.pool, sequence: seq.regclass, onDeath: sessionDied });
  const wakeup = new Wakeup({
    connect: (bound) => sessions.connect('(wake-up)', bound),
    bound: { ms: connectTimeout, timeout: false },
    onMessage: (payload) => questions.heard(payload),
  });
  // With a pool of 3 or more, an instance that holds locks keeps its wake-up connection to answer
  // inspect (a session, it, and one for the application's own queries).
  const answering = (o.pool.options?.max ?? 10) >= 3;
  const holds = new Holds(
    (h) => void unlock(h).catch(() => undefined),
    (busy) => answering && wakeup.holding(busy),
  );
  const questions = new Questions(
    (payload) => wakeup.say(payload),
    (nameKey) => holds.all().filter((h) => h.nameKey === nameKey),
  );

  /** The fence sequence, checked (and made) once per backend; again after it went missing. */
  const prepare = (key: string, bound: ConnectBound): Promise<void> =>
    (ready ??= (async () => {
      const client = await sessions.connect(key, bound);
      try {
        await ensureSequence(client, seq, false);
        prepared = true;
        client.release();
      } catch (error) {
        // Never back to the pool after a failure: the connection may be the broken part.
        client.release(true);
        throw error;
      }
    })().catch((error: unknown) => {
      ready = undefined;
      throw error;
    }));

  /** How long this request may wait for a pool connection, and what running out of it is. */
  const boundOf = (req: AcquireRequest): ConnectBound =>
    req.wait !== undefined && req.wait > 0 && req.wait <= connectTimeout
      ? { ms: req.wait, timeout: true }
      : { ms: connectTimeout, timeout: false };

  /** Releases `h` on the server (it is out of the bookkeeping already); false when the session had lost it. */
  async function unlock(h: Hold): Promise<boolean> {
    if (lastSession.size >= 1024) lastSession.clear();
    lastSession.set(h.key, h.session);
    wakeup.wake(h.nameKey);
    if (h.session.dead) return false;
    return h.session.unlock(h.lockKey, h.mode === 'shared' && !h.permit, h.fence, names.text(h.nameKey), names.wait(h.nameKey));
  }

  /** Renews `h` for `ttl` ms: one round trip on its session proves it (and its locks) alive. */
  async function renew(h: Hold, ttl: number): Promise<boolean> {
    const start = performance.now();
    if (h.deadline <= start || h.session.dead) return false;
    try {
      if (ttl > h.session.idle) await h.session.raise(ttl);
      else await h.session.ping();
    } catch (error) {
      if (h.session.dead) return false;
      throw error;
    }
    if (h.session.dead || holds.get(h.key, h.owner) !== h) return false;
    holds.extended(h, start + ttl);
    return true;
  }

  /** One grant attempt; runs alone per name (holds.serial). */
  async function attempt(req: AcquireRequest, nameKey: bigint, again = false): Promise<AcquireResult> {
    const start = performance.now();
    const permit = req.limit !== undefined;
    let held = 0;
    const local = new Set<bigint>();
    for (const h of holds.of(req.key)) {
      if (h.permit !== permit) continue;
      // Another owner of this process: its session would grant us its lock again (reentrancy).
      if (!permit && (req.mode === 'exclusive' || h.mode === 'exclusive')) return { granted: false };
      held += 1;
      local.add(h.lockKey);
    }
    if (permit && held >= req.limit!) return { granted: false };
    const bound = boundOf(req);
    if (!prepared) await prepare(req.key, bound);
    const announcing = wakeup.announced(nameKey);
    if (announcing) await announcing;
    const last = lastSession.get(req.key);
    if (last) lastSession.delete(req.key);
    const session = await sessions.pick(req.ttl, req.key, bound, last);
    let fence: bigint | undefined;
    let lockKey = nameKey;
    try {
      if (permit) {
        const row = (
          await session.query(
            GRANT_PERMIT,
            [
              names
                .slots(nameKey, req.limit!)
                .filter((k) => !local.has(k))
                .map(String),
              seq.regclass,
            ],
            true,
          )
        )[0];
        if (row) [lockKey, fence] = [BigInt(row.k as string), BigInt(row.fence as string)];
      } else if (req.mode === 'shared' && req.writerPreference) {
        const row = (await session.query(GRANT_SHARED_UNLESS_INTENT, [String(nameKey), String(intentKey(nameKey)), seq.regclass], true))[0];
        if (row) fence = BigInt(row.fence as string);
      } else fence = await session.try(nameKey, req.mode === 'shared');
    } catch (error) {
      // The sequence was dropped (or the database restored without it): make it again, once.
      if (isMissingRelation(error) && !again) {
        ready = undefined;
        prepared = false;
        return attempt(req, nameKey, true);
      }
      throw error;
    }
    if (fence === undefined) {
      if (req.intent !== undefined && req.mode === 'exclusive') await wakeup.intend(req.key, nameKey, req.owner);
      // Refused by another process while a waiter of ours listened only locally: it announces itself
      // now, and the caller tries again at once (a release between that try and this is not missed).
      const late = wakeup.late(nameKey);
      if (late) {
        await late;
        return { granted: false, retryAfter: 0 };
      }
      return { granted: false };
    }
    holds.add({ key: req.key, owner: req.owner, mode: req.mode, session, lockKey, nameKey, fence, permit, deadline: start + req.ttl });
    if (req.intent !== undefined) void wakeup.unintend(req.key, nameKey, req.owner);
    return { granted: true, fence };
  }

  async function acquire(req: AcquireRequest): Promise<AcquireResult> {
    if (closed) throw new LockAcquisitionError('the postgres backend is closed', { key: req.key });
    const nameKey = names.key(req.key);
    if (req.limit !== undefined && req.limit > MAX_SLOTS) {
      throw new LockArgumentError(
        `"${req.key}": the postgres backend offers semaphores of at most ${MAX_SLOTS} permits (one advisory key each)`,
        { key: req.key },
      );
    }
    const mine = holds.get(req.key, req.owner);
    if (mine) {
      if (mine.mode !== req.mode) return { granted: false };
      return (await renew(mine, req.ttl)) ? { granted: true, fence: mine.fence } : { granted: false };
    }
    return holds.serial(req.key, () => attempt(req, nameKey));
  }

  async function release(key: string, owner: string): Promise<boolean> {
    const h = holds.get(key, owner);
    if (!h) {
      // A waiter giving up: withdraw its writer intent, if it announced one.
      await wakeup.unintend(key, names.key(key), owner);
      return false;
    }
    holds.remove(h);
    try {
      return await unlock(h);
    } catch (error) {
      // The session ended (and with it the lock): nothing to release. Anything else is unconfirmed,
      // and the session has been closed for it (session.ts), which frees the lock on the server.
      if (h.session.dead && !(error instanceof LockArgumentError)) return false;
      throw error;
    }
  }

  async function extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const h = holds.get(key, owner);
    return h ? renew(h, ttl) : false;
  }

  async function inspect(key: string): Promise<LockInfo | null> {
    const nameKey = names.key(key);
    const bound = { ms: connectTimeout, timeout: false };
    if (!prepared) await prepare(key, bound);
    const values = [names.inspected(nameKey), seq.regclass];
    const session = sessions.any();
    let rows;
    if (session) rows = await session.query(INSPECT, values);
    else {
      const client = await sessions.connect(key, bound);
      try {
        rows = await run(client, INSPECT, values);
        client.release();
      } catch (error) {
        client.release(true);
        throw error;
      }
    }
    const found = holdersOf(key, nameKey, rows, holds.of(key), new Set(sessions.all.map((s) => s.pid)));
    if (!found) return null;
    if (found.remote.size > 0) {
      const owners = await questions.ask(nameKey, found.remote);
      for (const h of found.info.holders) h.owner = owners.get(String(h.fence)) ?? h.owner;
    }
    return found.info;
  }

  return {
    name: 'postgres',
    capabilities: { shared: true, wake: true, fencing: true, expiry: 'ttl' },
    // Rate buckets live in a table beside the fence sequence (identifiers checked by fenceSequence).
    rate: postgresRate(o.pool as unknown as Parameters<typeof postgresRate>[0], `"${seq.schema}"."${seq.name}_rate"`),
    pools: postgresPools(o.pool as unknown as Parameters<typeof postgresPools>[0], `"${seq.schema}"."${seq.name}_pool"`, (name) =>
      names.key(name),
    ),
    acquire,
    extend,
    release,
    inspect,
    // A name held here exclusively is freed by a release of ours, which wakes its waiters locally.
    waitForChange: (key, signal) =>
      wakeup.wait(names.key(key), signal, ![...holds.of(key)].some((h) => h.mode === 'exclusive' && !h.permit)),
    onLost: (l) => void lostListeners.push(l),
    async close() {
      if (closed) return;
      closed = true;
      // Locks still held end with their sessions (the core releases its leases before this).
      holds.clear();
      await Promise.all([sessions.close(), wakeup.close()]);
    },
  };
}
