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

import { performance } from 'node:perf_hooks';
import type { AcquireRequest, AcquireResult, LockBackend, LockInfo } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { isMissingRelation, type PgClientLike } from './client.js';
import { ensureSequence, sideTable } from './fence.js';
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
import { checkOptions, type PostgresBackendOptions } from './options.js';
import type { FenceSequence } from './fence.js';
import type { RateStore } from '../shared/gcra.js';
import type { PoolStore } from '../shared/pools.js';
import { plainBackend } from '../shared/plain.js';

export type { PostgresBackendOptions };

export { advisoryKey } from './keys.js';
export { MAX_SLOTS } from './inspect.js';
export { withTransactionLock, type TransactionLockOptions, type TransactionLock } from './transaction.js';
export type { PgClientLike, PgPoolLike, Row } from './client.js';

export function postgresBackend(options: PostgresBackendOptions): LockBackend {
  return plainBackend(new PostgresBackend(options));
}

class PostgresBackend implements LockBackend {
  readonly name = 'postgres';
  readonly capabilities = { shared: true, wake: true, fencing: true, expiry: 'ttl' } as const;
  readonly rate: RateStore;
  readonly pools: PoolStore;
  readonly #seq: FenceSequence;
  readonly #connectTimeout: number;
  /** The bound of a request whose own wait does not bound its wait for a connection. */
  readonly #bound: ConnectBound;
  readonly #lostListeners: ((key: string, owner: string, reason: unknown) => void)[] = [];
  /** The session each name was last released on (reused next, for its prepared statements). */
  readonly #lastSession = new Map<string, Session>();
  readonly #names: Names;
  readonly #sessions: Sessions;
  readonly #wakeup: Wakeup;
  readonly #holds: Holds;
  readonly #questions: Questions;
  #closed = false;
  #ready: Promise<void> | undefined;
  /** `ready` settled well: attempts need not wait on it. */
  #prepared = false;

  constructor(options: PostgresBackendOptions) {
    const { pool, seq, key, connectTimeout } = checkOptions(options);
    this.#seq = seq;
    this.#connectTimeout = connectTimeout;
    this.#bound = { ms: connectTimeout, timeout: false };
    this.#names = new Names(key);
    this.#sessions = new Sessions({ pool, sequence: seq.regclass, onDeath: (session, reason) => this.#sessionDied(session, reason) });
    this.#wakeup = new Wakeup({
      connect: (bound) => this.#sessions.connect('(wake-up)', bound),
      bound: { ms: connectTimeout, timeout: false },
      onMessage: (payload) => this.#questions.heard(payload),
    });
    // With a pool of 3 or more, an instance that holds locks keeps its wake-up connection to answer
    // inspect (a session, it, and one for the application's own queries).
    const answering = (pool.options?.max ?? 10) >= 3;
    this.#holds = new Holds(
      (h) => void this.#unlock(h).catch(() => undefined),
      (busy) => answering && this.#wakeup.holding(busy),
    );
    this.#questions = new Questions(
      (payload) => this.#wakeup.say(payload),
      (nameKey) => this.#holds.all().filter((h) => h.nameKey === nameKey),
    );
    // Rate buckets and pool members live in tables beside the fence sequence (identifiers checked by fenceSequence).
    const tables = pool as unknown as Parameters<typeof postgresPools>[0];
    this.rate = postgresRate(tables, sideTable(seq, 'rate'));
    const using = <T>(name: string, use: (c: PgClientLike) => Promise<T>): Promise<T> => this.#sessions.using(name, this.#bound, use);
    this.pools = postgresPools(tables, sideTable(seq, 'pool'), (name) => this.#names.key(name), using);
  }

  /** The lease on a session that died is gone: exactly the holds on it are lost. */
  #sessionDied(session: Session, reason: unknown): void {
    for (const h of this.#holds.on(session)) {
      if (!this.#holds.remove(h)) continue;
      this.#wakeup.wake(h.nameKey);
      for (const l of this.#lostListeners) l(h.key, h.owner, reason);
    }
  }

  /** The fence sequence, checked (and made) once per backend; again after it went missing. */
  #prepare(key: string, bound: ConnectBound): Promise<void> {
    return (this.#ready ??= (async () => {
      await this.#sessions.using(key, bound, (client) => ensureSequence(client, this.#seq, false));
      this.#prepared = true;
    })().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    }));
  }

  /** How long this request may wait for a pool connection, and what running out of it is. */
  #boundOf(req: AcquireRequest): ConnectBound {
    return req.wait !== undefined && req.wait > 0 && req.wait <= this.#connectTimeout ? { ms: req.wait, timeout: true } : this.#bound;
  }

  /** Releases `h` on the server (it is out of the bookkeeping already); false when the session had lost it. */
  #unlock(h: Hold): Promise<boolean> {
    if (this.#lastSession.size >= 1024) this.#lastSession.clear();
    this.#lastSession.set(h.key, h.session);
    this.#wakeup.wake(h.nameKey);
    if (h.session.dead) return Promise.resolve(false);
    const name = this.#names.text(h.nameKey);
    const key = h.lockKey === h.nameKey ? name : String(h.lockKey);
    return h.session.unlock(key, h.mode === 'shared' && !h.permit, h.fenceText, name, this.#names.wait(h.nameKey));
  }

  /** Renews `h` for `ttl` ms: one round trip on its session proves it (and its locks) alive. */
  async #renew(h: Hold, ttl: number): Promise<boolean> {
    const start = performance.now();
    if (h.deadline <= start || h.session.dead) return false;
    try {
      if (ttl > h.session.idle) await h.session.raise(ttl);
      else await h.session.ping();
    } catch (error) {
      if (h.session.dead) return false;
      throw error;
    }
    if (h.session.dead || this.#holds.get(h.key, h.owner) !== h) return false;
    this.#holds.extended(h, start + ttl);
    return true;
  }

  /** One grant attempt; runs alone per name (holds.serial). */
  async #attempt(req: AcquireRequest, nameKey: bigint, again = false): Promise<AcquireResult> {
    const start = performance.now();
    const permit = req.limit !== undefined;
    let held = 0;
    const local = permit ? new Set<bigint>() : undefined;
    for (const h of this.#holds.of(req.key)) {
      if (h.permit !== permit) continue;
      // Another owner of this process: its session would grant us its lock again (reentrancy).
      if (!permit && (req.mode === 'exclusive' || h.mode === 'exclusive')) return { granted: false };
      held += 1;
      local?.add(h.lockKey);
    }
    if (permit && held >= req.limit!) return { granted: false };
    const bound = this.#boundOf(req);
    if (!this.#prepared) await this.#prepare(req.key, bound);
    const announcing = this.#wakeup.announced(nameKey);
    if (announcing) await announcing;
    const last = this.#lastSession.get(req.key);
    if (last) this.#lastSession.delete(req.key);
    const picked = this.#sessions.pick(req.ttl, req.key, bound, last);
    const session = picked instanceof Promise ? await picked : picked;
    let fence: string | undefined;
    let lockKey = nameKey;
    try {
      if (permit) {
        const row = (
          await session.query(
            GRANT_PERMIT,
            [
              this.#names
                .slots(nameKey, req.limit!)
                .filter((k) => !local?.has(k))
                .map(String),
              this.#seq.regclass,
            ],
            true,
          )
        )[0];
        if (row) [lockKey, fence] = [BigInt(row.k as string), row.fence as string];
      } else if (req.mode === 'shared' && req.writerPreference) {
        const row = (
          await session.query(GRANT_SHARED_UNLESS_INTENT, [String(nameKey), String(intentKey(nameKey)), this.#seq.regclass], true)
        )[0];
        if (row) fence = row.fence as string;
      } else fence = await session.try(this.#names.text(nameKey), req.mode === 'shared');
    } catch (error) {
      // The sequence was dropped (or the database restored without it): make it again, once.
      if (isMissingRelation(error) && !again) {
        this.#ready = undefined;
        this.#prepared = false;
        return this.#attempt(req, nameKey, true);
      }
      throw error;
    }
    if (fence === undefined) {
      if (req.intent !== undefined && req.mode === 'exclusive') await this.#wakeup.intend(req.key, nameKey, req.owner);
      // Refused by another process while a waiter of ours listened only locally: it announces itself
      // now, and the caller tries again at once (a release between that try and this is not missed).
      const late = this.#wakeup.late(nameKey);
      if (late) {
        await late;
        return { granted: false, retryAfter: 0 };
      }
      return { granted: false };
    }
    const granted = BigInt(fence);
    this.#holds.add({
      key: req.key,
      owner: req.owner,
      mode: req.mode,
      session,
      lockKey,
      nameKey,
      fence: granted,
      fenceText: fence,
      permit,
      deadline: start + req.ttl,
    });
    if (req.intent !== undefined) void this.#wakeup.unintend(req.key, nameKey, req.owner);
    return { granted: true, fence: granted };
  }

  // Not async: an async function that returns the attempt's promise would settle two ticks after it.
  acquire(req: AcquireRequest): Promise<AcquireResult> {
    let nameKey: bigint;
    try {
      if (this.#closed) throw new LockAcquisitionError('the postgres backend is closed', { key: req.key });
      nameKey = this.#names.key(req.key);
      if (req.limit !== undefined && req.limit > MAX_SLOTS) {
        throw new LockArgumentError(
          `"${req.key}": the postgres backend offers semaphores of at most ${MAX_SLOTS} permits (one advisory key each)`,
          { key: req.key },
        );
      }
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const mine = this.#holds.get(req.key, req.owner);
    if (mine) return this.#again(mine, req);
    return this.#holds.serial(req.key, () => this.#attempt(req, nameKey));
  }

  /** An owner that holds the name already: the same mode is a renewal, another a refusal. */
  async #again(mine: Hold, req: AcquireRequest): Promise<AcquireResult> {
    if (mine.mode !== req.mode) return { granted: false };
    return (await this.#renew(mine, req.ttl)) ? { granted: true, fence: mine.fence } : { granted: false };
  }

  async release(key: string, owner: string): Promise<boolean> {
    const h = this.#holds.get(key, owner);
    if (!h) {
      // A waiter giving up: withdraw its writer intent, if it announced one.
      await this.#wakeup.unintend(key, this.#names.key(key), owner);
      return false;
    }
    this.#holds.remove(h);
    try {
      return await this.#unlock(h);
    } catch (error) {
      // The session ended (and with it the lock): nothing to release. Anything else is unconfirmed,
      // and the session has been closed for it (session.ts), which frees the lock on the server.
      if (h.session.dead && !(error instanceof LockArgumentError)) return false;
      throw error;
    }
  }

  async extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const h = this.#holds.get(key, owner);
    return h ? this.#renew(h, ttl) : false;
  }

  async inspect(key: string): Promise<LockInfo | null> {
    const nameKey = this.#names.key(key);
    const bound = { ms: this.#connectTimeout, timeout: false };
    if (!this.#prepared) await this.#prepare(key, bound);
    const rows = await this.#sessions.read(key, INSPECT, [this.#names.inspected(nameKey), this.#seq.regclass], bound);
    const found = holdersOf(key, nameKey, rows, this.#holds.of(key), new Set(this.#sessions.all.map((s) => s.pid)));
    if (!found) return null;
    if (found.remote.size > 0) {
      const owners = await this.#questions.ask(nameKey, found.remote);
      for (const h of found.info.holders) h.owner = owners.get(String(h.fence)) ?? h.owner;
    }
    return found.info;
  }

  // A name held here exclusively is freed by a release of ours, which wakes its waiters locally.
  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return this.#wakeup.wait(this.#names.key(key), signal, ![...this.#holds.of(key)].some((h) => h.mode === 'exclusive' && !h.permit));
  }

  onLost(listener: (key: string, owner: string, reason: unknown) => void): void {
    this.#lostListeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Locks still held end with their sessions (the core releases its leases before this).
    this.#holds.clear();
    await Promise.all([this.#sessions.close(), this.#wakeup.close()]);
  }
}
