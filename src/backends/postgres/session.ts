// One pooled connection used as a lock session: it holds any number of this backend instance's
// advisory locks at once (PostgreSQL keeps them per session, in shared memory, without limit but the
// lock table's). Which owner holds which lock is the backend's bookkeeping (holds.ts), never the
// session's: a session lock is reentrant, so two owners must never both take a key on one session.
//
// Statements run one at a time, in order (pg queues them per connection). Tries and releases that
// queue up behind the statement in flight go out together as one batched statement when it returns,
// so a session serves many concurrent callers with one round trip per batch. Order is kept: a batch
// is a run of same-kind requests in arrival order, so a release always reaches the server before a
// try queued after it.
//
// Liveness: the session's idle_session_timeout is at least the ttl of every lock on it. Locks on it
// are renewed by any statement on it; while it holds locks, a keepalive runs after idle/3 without
// one. If this process stops (SIGSTOP, a partition), the server ends the session once it has been
// idle that long, and so frees every lock on it. A session ended any way (terminated, network cut,
// idle timeout, restart) is reported once through `onDeath`: exactly the locks on it are lost.

import { performance } from 'node:perf_hooks';
import { LockAcquisitionError } from '../../errors.js';
import { isConnectionError, isMissingRelation, run, type PgClientLike, type Row } from './client.js';
import { sendTries, sendUnlocks, type Runner, type Try, type Unlock, type Waiting } from './grants.js';
import { canRunLean, runLean, runPlain } from './lean.js';
import { PING, RESTORE, SET_IDLE, type Statement } from './sql.js';

/** Requests one batched statement carries at most (a bound on its size, not on throughput). */
const MAX_BATCH = 256;

/** Any other statement; `locks`: it may take locks (a failure other than a missing sequence ends the session). */
interface Other extends Waiting<Row[]> {
  kind: 'other';
  statement: Statement;
  values: unknown[];
  locks: boolean;
}
type Request = Try | Unlock | Other;

export interface SessionSettings {
  /** The fence sequence, as regclass text. */
  sequence: string;
  /** What OPEN_SESSION read, put back by retire(). */
  restore: { app: string; idle: string };
  onDeath(session: Session, reason: unknown): void;
  /** Called when the session has nothing queued (the set may retire it). */
  onIdle(session: Session): void;
}

export class Session {
  readonly client: PgClientLike;
  readonly pid: number;
  /** The idle_session_timeout set on it (ms): at least the ttl of every lock held on it. */
  idle: number;
  /** Locks held on it, as counted by the backend's bookkeeping (hold/unhold). */
  locks = 0;
  dead = false;
  /** Being given back to the pool: nothing new goes on it. */
  retiring = false;
  /**
   * Locks the server granted on it and not yet released, counted from the statements' results (the
   * bookkeeping may learn of a grant a moment later): a session that holds any is never given back.
   */
  #taken = 0;
  readonly #count = (change: number): void => {
    this.#taken += change;
  };
  readonly #settings: SessionSettings;
  /** Runs a grant or a release on this session (lean.ts): rows as text. */
  readonly #run: Runner;
  readonly #queue: Request[] = [];
  #busy = false;
  #sent = performance.now();
  #keepalive: NodeJS.Timeout | undefined;
  /** A ping not sent yet: callers that want one share it. */
  #ping: Promise<Row[]> | undefined;
  #pingRequest: Request | undefined;
  readonly #onError = (error: Error): void => this.die(error);
  readonly #onEnd = (): void => this.die(new Error('the connection ended'));

  constructor(client: PgClientLike, idle: number, settings: SessionSettings) {
    this.client = client;
    this.pid = client.processID ?? -1;
    this.idle = idle;
    this.#settings = settings;
    const exec = canRunLean(client) ? runLean : runPlain;
    this.#run = (statement, values) => exec(client, statement, values);
    client.on('error', this.#onError);
    client.on('end', this.#onEnd);
  }

  /** Requests queued or in flight. */
  get load(): number {
    return this.#queue.length + (this.#busy ? 1 : 0);
  }

  /** The backend recorded a lock on this session: keep it alive from now on. */
  hold(): void {
    this.locks += 1;
    if (this.locks === 1 && this.load === 0) this.#idle();
  }

  /** A lock on this session ended (released, expired): with none left, it may be retired. */
  unhold(): void {
    this.locks -= 1;
    if (this.locks === 0 && this.load === 0) this.#idle();
  }

  /** Tries `key` (as text) without waiting: its fence (as text) when granted, undefined when refused. */
  try(key: string, shared: boolean): Promise<string | undefined> {
    return this.#enqueue<string | undefined>((resolve, reject) => ({ kind: 'try', key, shared, resolve, reject }));
  }

  /** Releases `key` (and its marker, and wakes its waiters); false when the session did not hold it. */
  unlock(key: string, shared: boolean, fence: string, name: string, wait: string): Promise<boolean> {
    return this.#enqueue<boolean>((resolve, reject) => ({ kind: 'unlock', key, shared, fence, name, wait, resolve, reject }));
  }

  query(statement: Statement, values: unknown[], locks = false): Promise<Row[]> {
    return this.#enqueue<Row[]>((resolve, reject) => ({ kind: 'other', statement, values, locks, resolve, reject }));
  }

  /** Proves the session alive now (every lock on it then lives at least `idle` from the ping's arrival). */
  ping(): Promise<Row[]> {
    if (this.#ping) return this.#ping;
    const pending = this.#enqueue<Row[]>(
      (resolve, reject) => (this.#pingRequest = { kind: 'other', statement: PING, values: [], locks: false, resolve, reject }),
    );
    // Sent at once (nothing was in flight): the next caller needs a ping of its own.
    if (this.#pingRequest) this.#ping = pending;
    return pending;
  }

  /** Raises idle_session_timeout to `ms` (never lowers it: a lock on the session may need it). */
  async raise(ms: number): Promise<void> {
    if (ms <= this.idle) return;
    await this.query(SET_IDLE, [String(ms)]);
    this.idle = Math.max(this.idle, ms);
  }

  /** Ends the session: the server frees every lock on it. Reported through onDeath once. */
  die(reason: unknown): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.#keepalive);
    this.#keepalive = undefined;
    // Our listeners stay: a closed client may still report the write that failed, and an 'error'
    // nobody listens to would end the process.
    try {
      this.client.release(true);
    } catch {
      // Released already by the pool's own error handling.
    }
    const error = reason instanceof Error ? reason : new Error('the session ended', { cause: reason });
    for (const r of this.#queue.splice(0)) r.reject(error);
    this.#settings.onDeath(this, reason);
  }

  /** Puts back the settings it came with and returns the connection to the pool (it holds nothing). */
  async retire(): Promise<void> {
    this.retiring = true;
    clearTimeout(this.#keepalive);
    this.#keepalive = undefined;
    const { app, idle } = this.#settings.restore;
    try {
      await this.query(RESTORE, [app, idle]);
    } catch {
      return this.die(new Error('retired'));
    }
    if (this.dead) return;
    // A grant that was in flight when it was retired (a closing backend): close it, do not lend it out.
    if (this.#taken > 0) return this.die(new Error('retired holding a lock'));
    this.dead = true;
    this.client.removeListener('error', this.#onError);
    this.client.removeListener('end', this.#onEnd);
    this.client.release();
  }

  #enqueue<T>(make: (resolve: Waiting<T>['resolve'], reject: Waiting<T>['reject']) => Request): Promise<T> {
    if (this.dead) return Promise.reject(new LockAcquisitionError('the session ended'));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push(make(resolve, reject));
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#busy || this.dead) return;
    const first = this.#queue[0];
    if (!first) return this.#idle();
    this.#busy = true;
    let n = 1;
    if (first.kind !== 'other') while (n < MAX_BATCH && this.#queue[n]?.kind === first.kind) n += 1;
    const batch = this.#queue.splice(0, n);
    if (first === this.#pingRequest) this.#ping = this.#pingRequest = undefined;
    this.#sent = performance.now();
    const next = (): void => {
      this.#busy = false;
      this.#pump();
    };
    this.#send(batch).then(next, next);
  }

  /**
   * Sends one batch and settles its requests; never rejects. Written as one chain on pg's own promise
   * rather than async functions calling each other: on every grant and release, each layer of those
   * was one more promise to make and settle (the pair is latency-bound, and every µs of ours is in it).
   */
  #send(batch: Request[]): Promise<void> {
    const first = batch[0]!;
    let sent: Promise<void>;
    try {
      if (first.kind === 'other') {
        sent = run(this.client, first.statement, first.values).then((rows) => {
          if (first.locks) this.#taken += rows.length;
          first.resolve(rows);
        });
      } else if (first.kind === 'try') sent = sendTries(this.#run, this.#settings.sequence, batch as Try[], this.#count);
      else sent = sendUnlocks(this.#run, batch as Unlock[], this.#count);
    } catch (error) {
      sent = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return sent.catch((error: unknown) => {
      for (const r of batch) r.reject(error);
      // A failed try or release may have left a lock we do not know of (a session lock survives its
      // statement's failure): only ending the session makes sure. A missing sequence fails a grant
      // before its lock (sql.ts), and a ping or a setting holds nothing.
      const harmless = first.kind === 'other' ? !first.locks || isMissingRelation(error) : first.kind === 'try' && isMissingRelation(error);
      if (isConnectionError(error) || !harmless) this.die(error);
    });
  }

  /** Nothing queued: keep the session alive while it holds locks, else let the set retire it. */
  #idle(): void {
    // One timer, armed once and looked at when it fires, not one per statement; nor one per lock:
    // a process that takes one lock at a time has none between two, and the timer, left armed, finds
    // none when it fires (or finds the next one, and keeps it alive).
    if (this.locks === 0) return this.#settings.onIdle(this);
    if (this.#keepalive === undefined) this.#armKeepalive(Math.max(1, Math.floor(this.idle / 3)));
  }

  #armKeepalive(ms: number): void {
    this.#keepalive = setTimeout(() => {
      this.#keepalive = undefined;
      if (this.dead || this.locks === 0) return;
      const every = Math.max(1, Math.floor(this.idle / 3));
      // A statement since the last one this timer saw restarted the server's clock too.
      const quiet = performance.now() - this.#sent;
      if (this.#busy || quiet < every - 1) return this.#armKeepalive(this.#busy ? every : every - quiet);
      this.ping().catch(() => undefined);
    }, ms);
    this.#keepalive.unref();
  }
}
