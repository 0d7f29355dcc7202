// The backend instance's lock sessions: a small set (at most a quarter of the pool, 1 to 4), opened
// when a lock needs one and given back to the pool, settings restored, once they hold nothing for a
// moment (at once while the pool has callers waiting).
//
// Placement by ttl. A session's idle_session_timeout must be at least the ttl of every lock on it
// (or the server could end it while a holder still believes in its lease), and a lock can outlive
// its lease by up to that timeout when its process stops talking (paused, partitioned). So each
// distinct ttl gets its own session while the set has room: with the usual one or two ttls, a lock
// outlives its lease by at most its own ttl. Beyond four distinct ttls, a lock goes to the session
// with the nearest timeout at or above its ttl (or raises the longest one), and may outlive its lease
// by up to that session's timeout.
//
// A busy session (requests queued behind the statement in flight) makes the set open another for
// the same ttl in the background, while the request queues on the busy one and rides its next batch.

import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { LockAcquisitionError, LockTimeoutError } from '../../errors.js';
import { withTimeout } from '../../core/time.js';
import { run, type PgClientLike, type PgPoolLike, type Row } from './client.js';
import { Session } from './session.js';
import { OPEN_SESSION, type Statement } from './sql.js';

/** How long a session that holds nothing stays for the next lock before going back to the pool. */
const LINGER_MS = 1_000;

/** How the caller waits for a connection: up to `ms`, then an error of `timeout` kind (the acquire's own wait) or not. */
export interface ConnectBound {
  ms: number;
  /** The bound is the acquire's `wait`: running out of it is a LockTimeoutError. */
  timeout: boolean;
}

export interface SessionsOptions {
  pool: PgPoolLike;
  /** The fence sequence as regclass text. */
  sequence: string;
  onDeath(session: Session, reason: unknown): void;
}

/**
 * A checked-out client with an 'error' listener until it goes back: pg emits 'error' when the server
 * ends a session between two of its queries (pg_terminate_backend, a restart), and with no listener
 * that is an uncaught exception in the application. The next query on it fails, and says why.
 */
function guarded(client: PgClientLike): PgClientLike {
  const ignore = (): void => undefined;
  client.on('error', ignore);
  const release = client.release.bind(client);
  client.release = (destroy?: boolean | Error): void => {
    client.removeListener('error', ignore);
    release(destroy);
  };
  return client;
}

/**
 * A client from `pool`, guarded from the step that hands it over: by callback, not by connect()'s
 * promise. A server that ends a connection as it finishes opening it (pg_terminate_backend) can send
 * the error in the same read as the reply that completes the opening; pg parses both in one go and
 * emits the error before a promise's reaction could add a listener (uncaught in 2 of 20 runs of the
 * conformance test that kills a holder's sessions).
 */
function checkout(pool: PgPoolLike): Promise<PgClientLike> {
  return new Promise((resolve, reject) => {
    pool.connect((error, client) => (error || !client ? reject(error ?? new Error('the pool gave no client')) : resolve(guarded(client))));
  });
}

export class Sessions {
  /** Shown as application_name of every session (and so by inspect): `locksmith:<random>`. */
  readonly instance = `locksmith:${randomBytes(4).toString('hex')}`;
  readonly max: number;
  readonly #o: SessionsOptions;
  readonly #live: Session[] = [];
  /** Sessions being opened, with the ttl each is for. */
  readonly #opening = new Map<Promise<Session>, number>();
  /** Idle sessions' way back to the pool: since when each is idle, for how long it may linger. */
  readonly #retire = new Map<Session, { timer: NodeJS.Timeout; since: number; linger: number }>();
  /** Sessions on their way back to the pool (close waits for them). */
  readonly #retiring = new Set<Promise<void>>();
  #closed = false;

  constructor(o: SessionsOptions) {
    this.#o = o;
    this.max = Math.min(4, Math.max(1, Math.floor((o.pool.options?.max ?? 10) / 4)));
  }

  /** Sessions alive now. */
  get all(): readonly Session[] {
    return this.#live;
  }

  /** A session for a lock of `ttl` ms (see the placement rules above). */
  pick(ttl: number, key: string, bound: ConnectBound, prefer?: Session): Session | Promise<Session> {
    // The session that last held this name: a try there follows its release in order (elsewhere it
    // could reach the server first and be refused by our own lock). Returned as it is, not in a
    // promise: the caller then awaits nothing (the common case of a name locked again and again).
    if (prefer && !prefer.dead && !prefer.retiring && prefer.idle >= ttl) return prefer;
    return this.#pick(ttl, key, bound);
  }

  async #pick(ttl: number, key: string, bound: ConnectBound): Promise<Session> {
    for (;;) {
      const live = this.#live.filter((s) => !s.retiring && !s.dead);
      const same = least(live, ttl);
      const room = live.length + this.#opening.size < this.max;
      if (same && (same.load < 2 || !room)) return same;
      if (same) {
        // Busy: another session for this ttl is opened for the requests after this one.
        this.#open(ttl, key, bound).catch(() => undefined);
        return same;
      }
      // One opening for this ttl serves every request that comes meanwhile.
      const coming = [...this.#opening].find(([, t]) => t === ttl)?.[0];
      if (coming) {
        const session = await coming.catch(() => undefined);
        if (session && !session.dead && !session.retiring) return session;
        continue;
      }
      if (room) return this.#open(ttl, key, bound);
      const above = live.filter((s) => s.idle >= ttl).sort((a, b) => a.idle - b.idle)[0];
      if (above) return above;
      const longest = live.sort((a, b) => b.idle - a.idle)[0];
      if (longest) {
        await longest.raise(ttl);
        return longest;
      }
      // Every slot is a session still opening: wait for one.
      await Promise.race(this.#opening.keys()).catch(() => undefined);
    }
  }

  /** Any live session (for inspect), or undefined. */
  any(): Session | undefined {
    return least(this.#live.filter((s) => !s.retiring && !s.dead));
  }

  /** Runs one read on a live session when there is one, else on a pool connection of its own (inspect). */
  read(key: string, statement: Statement, values: unknown[], bound: ConnectBound): Promise<Row[]> {
    const session = this.any();
    return session ? session.query(statement, values) : this.using(key, bound, (client) => run(client, statement, values));
  }

  /** Runs `use` on a pool connection of its own, which goes back to the pool afterwards. */
  async using<T>(key: string, bound: ConnectBound, use: (client: PgClientLike) => Promise<T>): Promise<T> {
    const client = await this.connect(key, bound);
    try {
      const result = await use(client);
      client.release();
      return result;
    } catch (error) {
      // Never back to the pool after a failure: the connection may be the broken part.
      client.release(true);
      throw error;
    }
  }

  /** A connection from the pool within `bound`, or a clear error naming the pool. */
  async connect(key: string, bound: ConnectBound): Promise<PgClientLike> {
    const expired = (): Error =>
      bound.timeout
        ? new LockTimeoutError(
            `"${key}": waited ${bound.ms} ms for a connection from the pool (all in use, by other queries), not for the lock`,
            { key, waited: bound.ms },
          )
        : new LockAcquisitionError(
            `could not acquire "${key}": no connection from the pool within ${bound.ms} ms (all in use, by other queries)`,
            { key },
          );
    return withTimeout(checkout(this.#o.pool), bound.ms, expired, (late) => late.release());
  }

  /** The session was retired or died: forget it. */
  forget(session: Session): void {
    const at = this.#live.indexOf(session);
    if (at >= 0) this.#live.splice(at, 1);
    clearTimeout(this.#retire.get(session)?.timer);
    this.#retire.delete(session);
  }

  /**
   * Called by a session with nothing queued and no locks: give it back after a moment. One timer per
   * idle spell, not per release: a session in use again keeps its timer, which looks when it fires
   * (a process that locks one name at a time goes idle on every release).
   */
  idle(session: Session): void {
    if (session.dead) return;
    const linger = this.#closed || (this.#o.pool.waitingCount ?? 0) > 0 ? 0 : Math.min(LINGER_MS, Math.floor(session.idle / 2));
    const since = performance.now();
    const armed = this.#retire.get(session);
    if (armed && linger > 0) {
      armed.since = since;
      armed.linger = linger;
      return;
    }
    if (armed) clearTimeout(armed.timer);
    this.#armRetire(session, since, linger, linger);
  }

  #armRetire(session: Session, since: number, linger: number, ms: number): void {
    const entry = {
      since,
      linger,
      timer: setTimeout(() => {
        if (this.#retire.get(session) !== entry) return;
        this.#retire.delete(session);
        if (session.locks > 0 || session.load > 0 || session.dead) return;
        const left = entry.since + entry.linger - performance.now();
        if (left >= 1) return this.#armRetire(session, entry.since, entry.linger, left);
        this.forget(session);
        const retired = session.retire();
        this.#retiring.add(retired);
        void retired.finally(() => this.#retiring.delete(retired));
      }, ms),
    };
    entry.timer.unref();
    this.#retire.set(session, entry);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled(this.#opening.keys());
    for (const { timer } of this.#retire.values()) clearTimeout(timer);
    this.#retire.clear();
    const live = this.#live.splice(0);
    await Promise.all(this.#retiring);
    // Sessions that still hold locks are closed (the server frees them); empty ones go back.
    await Promise.all(
      live.map(async (s) => {
        if (s.locks > 0) s.die(new Error('the backend was closed'));
        else await s.retire();
      }),
    );
  }

  #open(ttl: number, key: string, bound: ConnectBound): Promise<Session> {
    const opening = (async () => {
      const client = await this.connect(key, bound);
      let row: Record<string, unknown> | undefined;
      try {
        row = (await run(client, OPEN_SESSION, [this.instance, String(ttl)]))[0];
      } catch (error) {
        client.release(true);
        throw error;
      }
      const restore = { app: typeof row?.app === 'string' ? row.app : '', idle: typeof row?.idle === 'string' ? row.idle : '0' };
      const session: Session = new Session(client, ttl, {
        sequence: this.#o.sequence,
        restore,
        onDeath: (s, reason) => {
          this.forget(s);
          this.#o.onDeath(s, reason);
        },
        onIdle: (s) => this.idle(s),
      });
      if (this.#closed) {
        await session.retire();
        throw new LockAcquisitionError('the postgres backend is closed', { key });
      }
      this.#live.push(session);
      // Opened for later requests, it may see none: it then goes back like any idle one.
      this.idle(session);
      return session;
    })();
    this.#opening.set(opening, ttl);
    void opening.then(
      () => this.#opening.delete(opening),
      () => this.#opening.delete(opening),
    );
    return opening;
  }
}

/** The least loaded of `sessions` (with idle_session_timeout `ttl`, if given). */
function least(sessions: Session[], ttl?: number): Session | undefined {
  let best: Session | undefined;
  for (const s of sessions) if ((ttl === undefined || s.idle === ttl) && (!best || s.load < best.load)) best = s;
  return best;
}
