// Locks on PostgreSQL advisory locks (session level). Each held lock pins one connection from the
// caller's pool for as long as it is held: the lock lives with that session, which is what frees it
// at once when the holder's process dies. Exclusive and read waits queue on the server (one
// statement that returns when the lock is granted); semaphore waits, and writers that let readers
// pass, are woken by NOTIFY from releases. Fences come from a sequence, bumped in the grant; who
// holds what is the holder session's application_name (sql.ts), so no grant writes a table.

import { createHash } from 'node:crypto';
import type { AcquireRequest, AcquireResult, LeaseHolder, LockBackend, LockInfo } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { sleep, withTimeout } from '../../core/time.js';
import { msOption } from '../shared/checks.js';
import { Wakers } from '../shared/wakers.js';
import { advisoryKey, slotKey } from './keys.js';
import { grantKind, releaseKind, statements, type Statements } from './sql.js';
import { quoteIdentifier } from './identifier.js';
import { postgresRate } from './rate.js';

export { advisoryKey } from './keys.js';
export { withTransactionLock, type TransactionLockOptions, type TransactionLock } from './transaction.js';

/** What we use of a pg `PoolClient`. */
export interface PgClientLike {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
  release(destroy?: boolean | Error): void;
  /** The server process of this session (for pg_cancel_backend). */
  processID?: number | null;
  on(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
}

/** What we use of a pg `Pool`. */
export interface PgPoolLike {
  connect(): Promise<PgClientLike>;
  options?: { max?: number };
  /** Callers waiting for a connection (pg-pool); spares are given back at once while there are any. */
  waitingCount?: number;
}

export interface PostgresBackendOptions {
  /** A pg `Pool`. Never ended by us; each lock held (or waited for) pins one of its connections. */
  pool: unknown;
  /** The fence sequence, created on first use (UNLOGGED); may be schema-qualified. Default "locksmith_fence". */
  sequence?: string;
  /**
   * The advisory key of a lock name (default: `advisoryKey`, a SHA-256 prefix). Give e.g.
   * `(name) => BigInt(name)` to share keys with code that calls pg_advisory_lock(42) itself.
   */
  key?: (name: string) => bigint;
  /** How long to wait for a connection from the pool (default 5000 ms), then fail the call. */
  connectTimeout?: number;
}

/** Semaphores take one advisory key per slot; every attempt tries them all, so keep them few. */
export const MAX_SLOTS = 1024;
/**
 * How many connections a backend keeps after releases (at most a quarter of the pool, so your own
 * queries keep most of it), and for how long, before the pool gets them back.
 */
const MAX_SPARES = 4;
const SPARE_LINGER_MS = 200;
/** How often the server checks that a waiting session's client is still there (see sql.ts). */
const CHECK_INTERVAL_MS = 250;
/** Slack added to a server-side wait's lock_timeout: the client gives up first and withdraws it. */
const WAIT_SLACK_MS = 1_000;
/** How long a withdrawal waits for the cancelled wait to report back before closing its session. */
const CANCEL_WAIT_MS = 1_000;

/** One connection taken from the pool, with what holding a lock on it changed. */
interface Pinned {
  readonly client: PgClientLike;
  /** The connection failed or ended: every lock on it is gone. */
  dead: boolean;
  /** idle_session_timeout before a grant set it, put back at release. */
  restoreIdle: string;
  /** application_name before a grant named the session after its holder, put back at release. */
  restoreApp: string;
  /** A grant changed the session's settings, and they have not been put back yet. */
  dirty: boolean;
  /** The idle_session_timeout the last grant set: a spare must go back to the pool before it. */
  idleTtl: number;
  /** A spare's linger. */
  spareTimer: NodeJS.Timeout | undefined;
  readonly onError: (error: Error) => void;
  readonly onEnd: () => void;
}

interface Held {
  pin: Pinned;
  mode: AcquireRequest['mode'];
  fence: bigint;
  /** The advisory key actually locked (the name's, or a semaphore slot's). */
  lockKey: bigint;
  nameKey: bigint;
  /** nameKey as decimal text, as statements take it. */
  keyText: string;
  /** A semaphore permit (an exclusive lock on a slot key; the semaphore is shared). */
  permit: boolean;
  /** Releases wake waiters that listen (semaphores, writers that let readers pass, reads). */
  notify: boolean;
  /** A renewal in flight: a release waits for it, so no statement of ours runs after the unpin. */
  renewing: Promise<unknown> | undefined;
}

/**
 * A server-side wait in flight: the grant arrives whenever the holder releases. This process's
 * exclusive waiters on a key share one (they queue among themselves above the backend, and only the
 * first in line asks): its grant goes to whichever of them asks next. Each reader has its own.
 */
interface Waiting {
  pin: Pinned;
  /** The slot in `waits`: "" for the key's exclusive wait, else the reader's owner. */
  slot: string;
  /** Owners refused while it waits; when the last of them gives up, the wait is withdrawn. */
  interested: Set<string>;
  mode: AcquireRequest['mode'];
  nameKey: bigint;
  notify: boolean;
  settled: boolean;
  grant?: { fence: bigint; lockKey: bigint };
  error?: unknown;
  /** Everyone gave up: a late grant is handed back. */
  withdrawn: boolean;
  /** Resolves once settled. */
  done: Promise<void>;
}

/** A pg Pool, not a single Client (whose connect() connects itself and yields no client). */
function isPool(pool: unknown): pool is PgPoolLike {
  return typeof pool === 'object' && pool !== null && typeof (pool as PgPoolLike).connect === 'function' && 'idleCount' in pool;
}

/** A statement's name for pg's per-connection cache: the same text always gets the same name. */
type Named = { name: string; text: string };
const named = (text: string): Named => ({ name: `locksmith_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`, text });

type Prepared = { [K in Exclude<keyof Statements, 'release' | 'grant'>]: Named } & { release: Record<string, Named>; grant: Record<string, Named> };

function prepared(all: Statements): Prepared {
  const { release, grant, ...rest } = all;
  const each = (o: Record<string, string>): Record<string, Named> => Object.fromEntries(Object.entries(o).map(([k, text]) => [k, named(text)]));
  return { ...(each(rest) as Omit<Prepared, 'release' | 'grant'>), release: each(release), grant: each(grant) };
}

export function postgresBackend(options: PostgresBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['pool', 'sequence', 'key', 'connectTimeout'], 'postgresBackend()');
  if (!isPool(o.pool)) throw new LockArgumentError('postgresBackend(): pool must be a pg Pool');
  const pool = o.pool;
  const quoted = quoteIdentifier(o.sequence ?? 'locksmith_fence', 'postgresBackend(): sequence');
  const sequence = (o.sequence as string | undefined) ?? 'locksmith_fence';
  if (o.key !== undefined && typeof o.key !== 'function') throw new LockArgumentError('postgresBackend(): key must be a function from a lock name to a bigint');
  const customKey = o.key as ((name: string) => bigint) | undefined;
  const connectTimeout = msOption('postgresBackend()', 'connectTimeout', o.connectTimeout, 5_000, 1);
  // NOTIFY channels are identifiers too: one per sequence, so separate ones do not wake each other.
  const channel = `${sequence.replace('.', '_')}_wake`.slice(0, 63);
  const sql = prepared(statements(quoted));
  const max = pool.options?.max ?? 10;
  const maxSpares = Math.min(MAX_SPARES, Math.floor(max / 4));

  const held = new Map<string, Map<string, Held>>();
  const waits = new Map<string, Map<string, Waiting>>();
  /** Wake-ups by name key: a server-side wait settled, or a NOTIFY arrived. */
  const wakers = new Wakers();
  const lostListeners: ((key: string, owner: string, reason: unknown) => void)[] = [];
  const slotCache = new Map<string, bigint[]>();
  /** Connections kept for a moment after a release (see recycle); counted as pinned. */
  const spares: Pinned[] = [];
  let pinnedCount = 0;
  let ready: Promise<void> | undefined;
  /** `ready` has settled well: grants need not wait on it. */
  let created = false;
  let listener: Promise<Pinned> | undefined;
  let closed = false;

  // Hot names skip the hash (and the key's decimal text, as statements take it); bounded, as names
  // may be endless (one per order, say).
  const keyCache = new Map<string, bigint>();
  const textCache = new Map<string, string>();
  const keyText = (name: string, key: bigint): string => (customKey ? String(key) : remember(textCache, name, 1024, () => String(key)));
  const keyOf = (name: string): bigint => {
    if (!customKey) return remember(keyCache, name, 1024, () => advisoryKey(name));
    const k: unknown = customKey(name);
    if (typeof k !== 'bigint' || BigInt.asIntN(64, k) !== k) {
      throw new LockArgumentError(`postgresBackend(): key("${name.slice(0, 40)}") must return a bigint in the signed 64-bit range`, { key: name });
    }
    return k;
  };

  const slots = (nameKey: bigint, limit: number): bigint[] =>
    remember(slotCache, `${nameKey}/${limit}`, 256, () => Array.from({ length: limit }, (_, i) => slotKey(nameKey, i)));

  const wake = (nameKey: bigint): void => wakers.wake(String(nameKey));

  const get = <T>(map: Map<string, Map<string, T>>, key: string, owner: string): T | undefined => map.get(key)?.get(owner);
  const put = <T>(map: Map<string, Map<string, T>>, key: string, owner: string, value: T): void => {
    let m = map.get(key);
    if (!m) map.set(key, (m = new Map<string, T>()));
    m.set(owner, value);
  };
  const drop = <T>(map: Map<string, Map<string, T>>, key: string, owner: string): void => {
    const m = map.get(key);
    if (!m) return;
    m.delete(owner);
    if (m.size === 0) map.delete(key);
  };

  /** Ends a connection's life with us; `destroy` closes it (and so frees any lock it holds). */
  const unpin = (pin: Pinned, destroy: boolean): void => {
    pin.client.removeListener('error', pin.onError);
    pin.client.removeListener('end', pin.onEnd);
    pinnedCount -= 1;
    try {
      pin.client.release(destroy || pin.dead ? true : undefined);
    } catch {
      // A client released twice (a race with the pool's own error handling) is already gone.
    }
  };

  /** The connection under a lock broke: the session, and so the lock, is gone. */
  const connectionLost = (pin: Pinned, reason: unknown): void => {
    if (pin.dead) return;
    pin.dead = true;
    const spare = spares.indexOf(pin);
    if (spare >= 0) {
      // A spare the server ended (its idle_session_timeout, a restart): it held nothing.
      spares.splice(spare, 1);
      clearTimeout(pin.spareTimer);
      unpin(pin, true);
      return;
    }
    for (const [key, owners] of held) {
      for (const [owner, h] of owners) {
        if (h.pin !== pin) continue;
        drop(held, key, owner);
        unpin(pin, true);
        for (const l of lostListeners) l(key, owner, reason);
      }
    }
  };

  /** A spare connection, if there is one: taken without a turn of the event loop. */
  function spare(): Pinned | undefined {
    const pinned = spares.pop();
    if (pinned) clearTimeout(pinned.spareTimer);
    return pinned;
  }

  async function pin(key: string): Promise<Pinned> {
    const kept = spare();
    if (kept) return kept;
    if (pinnedCount >= max) {
      throw new LockAcquisitionError(
        `could not acquire "${key}": all ${max} connections of the pool are pinned by locks this backend holds or waits for (each needs its own connection); raise the pool's max`,
        { key },
      );
    }
    pinnedCount += 1;
    let client: PgClientLike;
    try {
      client = await withTimeout(pool.connect(), connectTimeout, () => TIMED_OUT, (late) => late.release());
    } catch (error) {
      pinnedCount -= 1;
      if (error === TIMED_OUT) {
        throw new LockAcquisitionError(`could not acquire "${key}": no connection from the pool within ${connectTimeout} ms (the pool is busy)`, { key });
      }
      throw error;
    }
    const pinned: Pinned = {
      client,
      dead: false,
      restoreIdle: '0',
      restoreApp: '',
      dirty: false,
      idleTtl: 0,
      spareTimer: undefined,
      onError: (error: Error) => connectionLost(pinned, error),
      onEnd: () => connectionLost(pinned, new Error('the connection ended')),
    };
    client.on('error', pinned.onError);
    client.on('end', pinned.onEnd);
    return pinned;
  }

  /** The fence sequence, created once per backend (racing creators in other processes are fine). */
  function prepare(pinned: Pinned): Promise<void> {
    ready ??= pinned.client.query({ text: sql.create.text }).then(
      () => void (created = true),
      (error: unknown) => {
        // Two sessions creating it at once: one loses on the catalog's unique index; it exists.
        if ((error as { code?: string }).code === '23505' || (error as { code?: string }).code === '42P07') return void (created = true);
        ready = undefined;
        created = false;
        throw error;
      },
    );
    return ready;
  }

  /** A grant's row; what the grant changed on the session is put back at release. */
  /** `key` is the one asked for; a permit's row says which slot it got. */
  const grantOf = (pinned: Pinned, row: Record<string, unknown> | undefined, ttl: number | undefined, key: bigint): { fence: bigint; lockKey: bigint } | undefined => {
    if (!row) return undefined;
    // A spare's settings are still the last grant's: what to restore was read when it was fresh.
    if (!pinned.dirty) {
      pinned.restoreIdle = String(row.idle);
      pinned.restoreApp = String(row.app);
      pinned.dirty = true;
    }
    if (ttl !== undefined) pinned.idleTtl = ttl;
    return { fence: BigInt(row.fence as string), lockKey: typeof row.k === 'string' ? BigInt(row.k) : key };
  };

  /**
   * A connection we are done with. Kept as a spare for a moment (its settings as the last grant left
   * them), so the next lock skips the pool and the release needs no restore; given back to the pool
   * with its settings restored before its idle_session_timeout could end it.
   */
  function recycle(pinned: Pinned): void {
    if (pinned.dead) return unpin(pinned, true);
    // Never while others wait for the pool: our spare must not delay their queries.
    if (!closed && spares.length < maxSpares && !(pool.waitingCount! > 0)) {
      spares.push(pinned);
      const linger = pinned.dirty ? Math.min(SPARE_LINGER_MS, Math.floor(pinned.idleTtl / 2)) : SPARE_LINGER_MS;
      pinned.spareTimer = setTimeout(() => {
        const at = spares.indexOf(pinned);
        if (at >= 0) spares.splice(at, 1);
        void giveBack(pinned);
      }, linger);
      pinned.spareTimer.unref();
      return;
    }
    void giveBack(pinned);
  }

  /** Restores what our grants changed on the session, then returns it to the pool. */
  async function giveBack(pinned: Pinned): Promise<void> {
    if (!pinned.dirty || pinned.dead) return unpin(pinned, pinned.dead);
    try {
      await pinned.client.query({ ...sql.restore, values: [pinned.restoreIdle, pinned.restoreApp] });
      pinned.dirty = false;
      unpin(pinned, false);
    } catch {
      unpin(pinned, true);
    }
  }

  const slotOf = (req: { mode: AcquireRequest['mode']; owner: string }): string => (req.mode === 'exclusive' ? '' : req.owner);

  /** Starts a server-side wait on `pinned`; the request was just refused on it. */
  function startWait(req: AcquireRequest, pinned: Pinned, nameKey: bigint, notify: boolean): void {
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const w: Waiting = { pin: pinned, slot: slotOf(req), interested: new Set([req.owner]), mode: req.mode, nameKey, notify, settled: false, withdrawn: false, done };
    put(waits, req.key, w.slot, w);
    const timeout = req.wait === undefined || req.wait === Infinity ? 0 : Math.min(req.wait + WAIT_SLACK_MS, 2 ** 31 - 1);
    const statement = sql.grant[grantKind(req.mode === 'shared' ? 'ws' : 'wx', !pinned.dirty, false)]!;
    const name = sessionName(undefined, req.mode, req.ttl, req.owner);
    pinned.client
      .query({ ...statement, values: [String(nameKey), name.prefix, name.suffix, String(timeout), String(CHECK_INTERVAL_MS)] })
      .then(
        (result) => {
          const g = grantOf(pinned, result.rows[0], undefined, nameKey);
          if (!g) throw new Error('the server-side wait returned no grant');
          w.grant = g;
        },
        (error: unknown) => {
          w.error = error;
        },
      )
      .finally(() => {
        w.settled = true;
        // Nobody will take this grant (or the wait failed): closing the session frees what it took.
        if (w.withdrawn || w.error !== undefined) unpin(pinned, true);
        settle();
        wake(nameKey);
      })
      .catch(() => undefined);
  }

  /** Takes a settled server-side wait's grant for `req.owner`; its ttl starts now, on the server too. */
  function takeWait(req: AcquireRequest, w: Waiting): AcquireResult | undefined {
    drop(waits, req.key, w.slot);
    if (w.error !== undefined || !w.grant) {
      // lock_timeout, or the connection failed while waiting (its pin is closed already): try afresh.
      if (w.error !== undefined && !isLockTimeout(w.error)) throw w.error instanceof Error ? w.error : new Error('the server-side wait failed', { cause: w.error });
      return undefined;
    }
    if (w.pin.dead) return undefined;
    const h: Held = { pin: w.pin, mode: w.mode, permit: false, fence: w.grant.fence, lockKey: w.grant.lockKey, nameKey: w.nameKey, keyText: String(w.nameKey), notify: w.notify, renewing: undefined };
    put(held, req.key, req.owner, h);
    // The ttl is set on the server by a statement sent now and not awaited: the server's idle timer
    // then starts after it arrives, so after the caller's clock started, and the lease expires on
    // the server later than its holder believes. Awaiting it would add a round trip to every
    // handover. If it fails, the connection is gone and the lease is reported lost.
    renew(req.key, req.owner, h, req.ttl).catch((error: unknown) => connectionLost(h.pin, error));
    return { granted: true, fence: h.fence };
  }

  /** Restarts the server-side ttl, and names the session after `owner` (a shared wait's taker). */
  async function renew(key: string, owner: string, h: Held, ttl: number): Promise<boolean> {
    if (h.pin.dead) return false;
    const name = sessionName(h.permit ? h.nameKey : undefined, h.mode, ttl, owner);
    const pending = h.pin.client.query({ ...sql.extend, values: [ttl, name.prefix + hex(h.fence) + name.suffix] });
    h.renewing = pending.catch(() => undefined);
    try {
      await pending;
      return true;
    } catch (error) {
      // On a dead connection the lease is gone (the 'error' event may not have come yet); other
      // failures are the caller's to retry.
      if (h.pin.dead || isConnectionError(error)) {
        connectionLost(h.pin, error);
        return false;
      }
      throw error;
    }
  }

  async function acquire(req: AcquireRequest, again = false): Promise<AcquireResult> {
    if (closed) throw new LockAcquisitionError('the postgres backend is closed', { key: req.key });
    const mine = get(held, req.key, req.owner);
    if (mine) {
      if (mine.mode !== req.mode) return { granted: false };
      if (await renew(req.key, req.owner, mine, req.ttl)) return { granted: true, fence: mine.fence };
    }
    const waiting = get(waits, req.key, slotOf(req));
    if (waiting) {
      if (!waiting.settled) {
        // Only a caller that will keep trying (and withdraw when it gives up) keeps the wait alive.
        if (req.queue === true) waiting.interested.add(req.owner);
        return { granted: false };
      }
      const taken = takeWait(req, waiting);
      if (taken) return taken;
    }

    const nameKey = keyOf(req.key);
    const nameText = keyText(req.key, nameKey);
    const permit = req.limit !== undefined;
    if (permit && req.limit! > MAX_SLOTS) {
      throw new LockArgumentError(`"${req.key}": the postgres backend offers semaphores of at most ${MAX_SLOTS} permits (one advisory key each)`, { key: req.key });
    }
    // Permits are exclusive locks on slot keys; the semaphore as a whole is shared.
    const exclusive = req.mode === 'exclusive' || permit;
    // Waiters the server cannot queue are woken by NOTIFY: writers that let readers pass (a queued
    // writer holds back new readers on the server) and permits (a slot each); so their releases
    // notify, and so do reads, which such writers wait for.
    const notify = permit || req.mode === 'shared' || req.rw !== undefined;
    const serverWait = req.queue === true && !permit && req.rw !== 'reader-preference';

    const pinned = spare() ?? (await pin(req.key));
    let row: Record<string, unknown> | undefined;
    let setTtl = false;
    try {
      if (!created) await prepare(pinned);
      // A spare keeps the last grant's ttl on the server: set only when this one differs.
      setTtl = !pinned.dirty || pinned.idleTtl !== req.ttl;
      const statement = sql.grant[grantKind(permit ? 'p' : exclusive ? 'x' : 's', !pinned.dirty, setTtl)]!;
      const name = sessionName(permit ? nameKey : undefined, req.mode, req.ttl, req.owner);
      const first = permit ? slots(nameKey, req.limit!).map(String) : nameText;
      row = (await pinned.client.query({ ...statement, values: [first, name.prefix, name.suffix, ...(setTtl ? [req.ttl] : [])] })).rows[0];
    } catch (error) {
      unpin(pinned, true);
      // The sequence is gone (a database restored or recreated, someone dropped it): make it again.
      if ((error as { code?: string }).code === '42P01' && !again) {
        ready = undefined;
        created = false;
        return acquire(req, true);
      }
      throw error;
    }
    const g = grantOf(pinned, row, setTtl ? req.ttl : undefined, nameKey);
    if (g) {
      put(held, req.key, req.owner, { pin: pinned, mode: req.mode, permit, fence: g.fence, lockKey: g.lockKey, nameKey, keyText: nameText, notify, renewing: undefined });
      return { granted: true, fence: g.fence };
    }
    const started = get(waits, req.key, slotOf(req));
    if (started) {
      // Another waiter of ours started one while we tried: share it, or take its grant if it is in.
      recycle(pinned);
      if (started.settled) return takeWait(req, started) ?? { granted: false };
      if (req.queue === true) started.interested.add(req.owner);
      return { granted: false };
    }
    if (serverWait && !closed) {
      startWait(req, pinned, nameKey, notify);
      return { granted: false };
    }
    recycle(pinned);
    return { granted: false };
  }

  /**
   * Ends a server-side wait nobody will take. pg_cancel_backend makes the server leave the queue at
   * once (new readers must not stay held back by a writer that gave up); closing the session then
   * frees anything that raced in. Without a connection to cancel from, closing alone does it, within
   * client_connection_check_interval.
   */
  async function withdraw(w: Waiting): Promise<void> {
    w.withdrawn = true;
    if (w.settled) {
      if (w.error === undefined) unpin(w.pin, true);
      return;
    }
    const pid = w.pin.client.processID;
    if (typeof pid === 'number' && pinnedCount < max) {
      try {
        const p = await pin('(cancel)');
        try {
          await p.client.query({ text: 'SELECT pg_cancel_backend($1)', values: [pid] });
        } finally {
          recycle(p);
        }
        await Promise.race([w.done, sleep(CANCEL_WAIT_MS)]);
      } catch {
        // Closing the session below still ends the wait.
      }
    }
    if (!w.settled) w.pin.client.release(true);
  }

  async function release(key: string, owner: string): Promise<boolean> {
    // A waiter giving up (the owner holds nothing then): the last one interested withdraws the wait.
    if (waits.size > 0) for (const slot of ['', owner]) {
      const w = get(waits, key, slot);
      if (!w || !w.interested.delete(owner) || w.interested.size > 0) continue;
      drop(waits, key, slot);
      await withdraw(w);
    }
    const h = get(held, key, owner);
    if (!h) return false;
    drop(held, key, owner);
    if (h.renewing) await h.renewing;
    if (h.pin.dead) {
      unpin(h.pin, true);
      return false;
    }
    let ok: boolean;
    let restoring: boolean;
    try {
      // Kept as a spare, the session keeps its settings; given back, it gets them restored now.
      restoring = closed || spares.length >= maxSpares || pool.waitingCount! > 0;
      const statement = sql.release[releaseKind(h.mode === 'shared' && !h.permit, h.notify, restoring)]!;
      const values: string[] = [h.lockKey === h.nameKey ? h.keyText : String(h.lockKey)];
      if (restoring) values.push(h.pin.restoreIdle, h.pin.restoreApp);
      if (h.notify) values.push(channel, h.keyText);
      const r = await h.pin.client.query({ ...statement, values });
      ok = r.rows[0]?.ok === true;
    } catch (error) {
      // Unconfirmed: closing the session is the one way to be sure the lock is gone.
      unpin(h.pin, true);
      if (isConnectionError(error)) return false;
      throw error;
    }
    // A session that says it held nothing has lost a lock we thought it had: do not reuse it.
    if (!ok) unpin(h.pin, true);
    else if (restoring) {
      h.pin.dirty = false;
      unpin(h.pin, false);
    } else recycle(h.pin);
    return ok;
  }

  async function extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const h = get(held, key, owner);
    return h ? renew(key, owner, h, ttl) : false;
  }

  async function inspect(key: string): Promise<LockInfo | null> {
    const nameKey = keyOf(key);
    const pinned = await pin(key);
    let rows: Record<string, unknown>[];
    try {
      await prepare(pinned);
      rows = (await pinned.client.query({ ...sql.inspect, values: [String(nameKey), `lsp:${hex(nameKey)}:%`] })).rows;
    } finally {
      recycle(pinned);
    }
    if (rows.length === 0) return null;
    const now = Date.now();
    let exclusive = false;
    const holders: LeaseHolder[] = rows.map((r) => {
      const parsed = parseSessionName(typeof r.app === 'string' ? r.app : '');
      if (!parsed) {
        // Another program's advisory lock on the same key.
        exclusive ||= r.mode === 'ExclusiveLock';
        return { owner: `pid:${String(r.pid)}`, fence: 0n, expiresAt: Infinity };
      }
      exclusive ||= parsed.mode === 'e';
      // The server ends a session idle for its ttl: an idle holder's lease ends ttl after it went idle.
      const since = r.state === 'idle' && typeof r.since === 'number' ? r.since : now;
      return { owner: parsed.owner, fence: parsed.fence, expiresAt: Math.floor(since + parsed.ttl) };
    });
    return { key, mode: exclusive ? 'exclusive' : 'shared', holders };
  }

  /** One LISTEN connection per backend, opened when a waiter first needs it. */
  function listen(): Promise<Pinned> {
    if (listener) return listener;
    const opening = (async () => {
      const p = await pin('(wake-up listener)');
      p.client.on('notification', (msg: { channel?: string; payload?: string }) => {
        if (msg.channel === channel && msg.payload) wake(BigInt(msg.payload));
      });
      // A listener that dies is replaced by the next waiter; those waiting now try again at once.
      const reset = (): void => {
        if (listener === opening) listener = undefined;
        wakers.wakeAll();
      };
      p.client.on('error', reset);
      p.client.on('end', reset);
      try {
        await p.client.query({ text: `LISTEN "${channel}"` });
      } catch (error) {
        unpin(p, true);
        throw error;
      }
      return p;
    })();
    listener = opening;
    opening.catch(() => {
      if (listener === opening) listener = undefined;
    });
    return opening;
  }

  function waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return resolve();
      const withdraw = wakers.add(String(keyOf(key)), () => done());
      const done = (): void => {
        signal.removeEventListener('abort', done);
        withdraw();
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      // Waiters queued on the server are woken when their wait settles; the others need NOTIFY.
      const queued = [...(waits.get(key)?.values() ?? [])].some((w) => !w.settled);
      if (!queued) {
        listen().catch((error: unknown) => {
          done();
          reject(error instanceof Error ? error : new Error(String(error)));
        });
      }
    });
  }

  return {
    name: 'postgres',
    capabilities: { shared: true, wake: true, fencing: true, expiry: 'ttl' },
    rate: postgresRate(pool as unknown as Parameters<typeof postgresRate>[0], quoteIdentifier(`${sequence}_rate`, 'postgresBackend(): sequence')),
    acquire: (req) => acquire(req),
    extend,
    release,
    inspect,
    waitForChange,
    onLost: (l) => void lostListeners.push(l),
    async close() {
      if (closed) return;
      closed = true;
      const all = [...waits.values()].flatMap((m) => [...m.values()]);
      waits.clear();
      await Promise.all(all.map(withdraw));
      for (const [, owners] of held) for (const [, h] of owners) unpin(h.pin, true);
      held.clear();
      const kept = spares.splice(0);
      for (const p of kept) clearTimeout(p.spareTimer);
      await Promise.all(kept.map(giveBack));
      const l = listener;
      listener = undefined;
      if (l) await l.then((p) => unpin(p, true), () => undefined);
      wakers.wakeAll();
    },
  };
}

const TIMED_OUT = new Error('timed out');

/** Unsigned hex, as PostgreSQL's to_hex prints a bigint. */
const hex = (n: bigint): string => BigInt.asUintN(64, n).toString(16);

/** application_name holds at most 63 bytes; a fence is at most 16 hex digits. */
const NAME_BYTES = 63;

/**
 * The session's name while it holds a lock (see sql.ts), split around the fence, which the server
 * fills in. Owners are shortened to fit (marked with a trailing "~"), and characters outside
 * printable ASCII become "?", as the server would make them.
 */
const PRINTABLE = /^[\x20-\x7e]*$/;

/** `map`'s value for `id`, made on a miss; the map is emptied when it reaches `bound`. */
function remember<T>(map: Map<string, T>, id: string, bound: number, make: () => T): T {
  let value = map.get(id);
  if (value === undefined) {
    value = make();
    if (map.size >= bound) map.clear();
    map.set(id, value);
  }
  return value;
}

function sessionName(permitOf: bigint | undefined, mode: AcquireRequest['mode'], ttl: number, owner: string): { prefix: string; suffix: string } {
  const prefix = permitOf !== undefined ? `lsp:${hex(permitOf)}:${ttl.toString(16)}:` : `ls${mode === 'shared' ? 's' : 'e'}:${ttl.toString(16)}:`;
  const room = NAME_BYTES - prefix.length - 16 - 1;
  // Generated owners are short printable ASCII: they skip the rewrite.
  let shown = PRINTABLE.test(owner) ? owner : owner.replace(/[^\x20-\x7e]/g, '?');
  if (shown.length > room) shown = shown.slice(0, room - 1) + '~';
  return { prefix, suffix: `:${shown}` };
}

function parseSessionName(app: string): { mode: 'e' | 's' | 'p'; ttl: number; fence: bigint; owner: string } | undefined {
  const m = /^ls(?:([es])|p:[0-9a-f]+):([0-9a-f]+):([0-9a-f]+):(.*)$/.exec(app);
  if (!m) return undefined;
  return { mode: (m[1] as 'e' | 's' | undefined) ?? 'p', ttl: parseInt(m[2]!, 16), fence: BigInt(`0x${m[3]!}`), owner: m[4]! };
}

function isLockTimeout(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '55P03';
}

/** The session is gone: terminated (57P01…), shut down, or the socket broke. */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code ?? '';
  if (code.startsWith('57P') || code.startsWith('08')) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|ECONNRESET|EPIPE|not queryable|Client was closed/i.test(message);
}
