// Waiting without a connection per waiter. Each backend instance opens one wake-up connection, only
// while something of it waits: it LISTENs on the one channel releases notify, and it holds, shared,
// the wait key of every name this instance waits for (and the intent key of every name a writer of
// it waits for). A release notifies only when it finds a name's wait key held (sql.ts RELEASE), so
// releases nobody waits for cost no NOTIFY; a notification wakes this instance's waiters on that name.
// A holder that dies (its process, or its session) releases nothing and notifies nobody, so a wait on
// a name held elsewhere also ends every POLL_MS: the bounded poll that is the net.
//
// Order matters once: a waiter's announcement must reach the server before its next try, or a
// release between the two would find nobody announced. `announced(nameKey)` is what a try awaits.
//
// If the wake-up connection dies, its announcements die with it: every waiter is woken to try again
// (and so announces itself again on a new connection). When nothing waits for a moment, the
// connection is closed (it LISTENs, so it is not given back to the pool for others' use).

import { performance } from 'node:perf_hooks';
import { Wakers } from '../shared/wakers.js';
import { run, type PgClientLike } from './client.js';
import { intentKey, waitKey } from './keys.js';
import type { ConnectBound } from './sessions.js';
import { ANNOUNCE, CHANNEL, LISTEN, SAY, WITHDRAW, type Statement } from './sql.js';

/** How long the wake-up connection stays after the last waiter left. */
const LINGER_MS = 500;
/** How often a waiter on a name held elsewhere looks again without a notification (a dead holder sends none). */
const POLL_MS = 250;

interface Announcement {
  /** Waiters (or writers) of this instance behind it. */
  count: number;
  /** The ANNOUNCE statement's completion. */
  done: Promise<unknown>;
}

export interface WakeupOptions {
  /** A connection from the pool (sessions.connect). */
  connect(bound: ConnectBound): Promise<PgClientLike>;
  bound: ConnectBound;
  /** A message that is not a wake-up (its payload starts with "?" or "!": inspect.ts). */
  onMessage(payload: string): void;
}

export class Wakeup {
  readonly #wakers = new Wakers();
  readonly #o: WakeupOptions;
  #conn: Promise<PgClientLike> | undefined;
  /** By the announced key (wait or intent key) in decimal. */
  readonly #announced = new Map<string, Announcement>();
  /** Waits not announced (their name was held here exclusively), by name key. */
  readonly #quiet = new Map<string, Set<{ key: bigint; announced: boolean }>>();
  /** Owners whose writer intent on a name (by name) is announced. */
  readonly #intents = new Map<string, Set<string>>();
  #linger: NodeJS.Timeout | undefined;
  #closed = false;
  /** Statements on the connection, one after another (pg queues them too, but warns). */
  #tail: Promise<unknown> = Promise.resolve();
  /** This instance holds locks: the connection stays, to answer other instances' inspect. */
  #holding = false;
  /** performance.now() when the connection last became unneeded (see #lingerThenClose). */
  #unneededSince = 0;

  constructor(o: WakeupOptions) {
    this.#o = o;
  }

  /** Wakes this instance's waiters on a name (a local release, an expiry, a loss). */
  wake(nameKey: bigint): void {
    this.#wakers.wake(String(nameKey));
  }

  /**
   * Resolves on the next wake-up of `nameKey`, or when `signal` aborts. `announce`: the wait is
   * announced on the server at once; a waiter whose name this instance holds exclusively is woken by
   * that release locally and announces itself only if a try is then refused by the server (late()).
   */
  wait(nameKey: bigint, signal: AbortSignal, announce: boolean): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    const id = String(nameKey);
    const handle = { key: waitKey(nameKey), announced: announce };
    if (announce) void this.#announce(handle.key);
    else {
      let quiet = this.#quiet.get(id);
      if (!quiet) this.#quiet.set(id, (quiet = new Set()));
      quiet.add(handle);
    }
    // A holder whose process or session dies releases nothing and notifies nobody: announced waits
    // (the holder is elsewhere) also end every POLL_MS, so its waiters look again.
    const until = announce ? AbortSignal.any([signal, AbortSignal.timeout(POLL_MS)]) : signal;
    return this.#wakers.wait(id, until).finally(() => {
      const quiet = this.#quiet.get(id);
      if (quiet?.delete(handle) && quiet.size === 0) this.#quiet.delete(id);
      if (handle.announced) void this.#withdraw(handle.key);
    });
  }

  /**
   * A try on `nameKey` was refused by the server: waiters that did not announce themselves do now.
   * Returns the announcement when there was one to make (the caller tries again once it is in).
   */
  late(nameKey: bigint): Promise<unknown> | undefined {
    const quiet = this.#quiet.get(String(nameKey));
    if (!quiet) return undefined;
    this.#quiet.delete(String(nameKey));
    let done: Promise<unknown> | undefined;
    for (const handle of quiet) {
      handle.announced = true;
      done = this.#announce(handle.key);
    }
    return done;
  }

  /** Settles once this instance's announcement of a wait on `nameKey`, if any, has reached the server. */
  announced(nameKey: bigint): Promise<unknown> | undefined {
    return this.#announced.size === 0 ? undefined : this.#announced.get(String(waitKey(nameKey)))?.done;
  }

  /** A writer refused on `key` announces itself, so readers that prefer writers hold back. */
  async intend(key: string, nameKey: bigint, owner: string): Promise<void> {
    let owners = this.#intents.get(key);
    if (!owners) this.#intents.set(key, (owners = new Set()));
    if (owners.has(owner)) return;
    owners.add(owner);
    await this.#announce(intentKey(nameKey));
  }

  /** The writer got the lock or gave up. */
  async unintend(key: string, nameKey: bigint, owner: string): Promise<void> {
    const owners = this.#intents.get(key);
    if (!owners?.delete(owner)) return;
    if (owners.size === 0) this.#intents.delete(key);
    await this.#withdraw(intentKey(nameKey));
  }

  /**
   * While this instance holds locks, its wake-up connection stays open so other instances can ask it
   * who holds them (inspect.ts); without locks or waiters it closes after a moment.
   */
  holding(on: boolean): void {
    this.#holding = on;
    if (on) {
      if (!this.#conn) this.#connection().catch(() => undefined);
    } else if (this.#announced.size === 0) this.#lingerThenClose();
  }

  /** Sends `payload` to every instance's wake-up connection (this one's too, opened for the answers). */
  async say(payload: string): Promise<void> {
    await this.#run(SAY, payload);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wakers.wakeAll();
    clearTimeout(this.#linger);
    this.#linger = undefined;
    await this.#drop();
  }

  #announce(key: bigint): Promise<unknown> {
    const id = String(key);
    const a = this.#announced.get(id);
    if (a) {
      a.count += 1;
      return a.done;
    }
    // Never rejects: a failed announcement leaves the waiter to the core's poll.
    const done = this.#run(ANNOUNCE, id).catch(() => undefined);
    this.#announced.set(id, { count: 1, done });
    return done;
  }

  async #withdraw(key: bigint): Promise<void> {
    const id = String(key);
    const a = this.#announced.get(id);
    if (!a || --a.count > 0) return;
    this.#announced.delete(id);
    if (this.#announced.size === 0 && !this.#holding) this.#lingerThenClose();
    if (!this.#conn) return;
    // After the announcement itself (statements on the connection run in order).
    await this.#run(WITHDRAW, id).catch(() => undefined);
  }

  /** Runs `statement` on the wake-up connection after the ones before it. */
  #run(statement: Statement, value: string): Promise<unknown> {
    const conn = this.#connection();
    const next = this.#tail.then(() => conn.then((c) => run(c, statement, [value])));
    this.#tail = next.catch(() => undefined);
    return next;
  }

  #connection(): Promise<PgClientLike> {
    if (this.#conn) return this.#conn;
    const opening = (async () => {
      if (this.#closed) throw new Error('the postgres backend is closed');
      const c = await this.#o.connect(this.#o.bound);
      // Stays for the client's life: a closed client may still report an error.
      const lost = (): void => this.#reset(opening);
      c.on('error', lost);
      c.on('end', lost);
      c.on('notification', (msg: { channel?: string; payload?: string }) => {
        if (msg.channel !== CHANNEL || !msg.payload) return;
        if (msg.payload.startsWith('?') || msg.payload.startsWith('!')) this.#o.onMessage(msg.payload);
        else this.#wakers.wake(msg.payload);
      });
      try {
        await c.query({ text: LISTEN });
      } catch (error) {
        destroy(c);
        throw error;
      }
      return c;
    })();
    this.#conn = opening;
    opening.catch(() => this.#reset(opening));
    return opening;
  }

  /** The connection failed: its announcements are gone; every waiter tries again and re-announces. */
  #reset(conn: Promise<PgClientLike>): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    this.#tail = Promise.resolve();
    this.#announced.clear();
    this.#intents.clear();
    conn.then(destroy, () => undefined).catch(() => undefined);
    this.#wakers.wakeAll();
  }

  /**
   * Closes the connection once it has been unneeded for LINGER_MS. One timer, armed once and looked
   * at when it fires, not one per release: a process that locks one name at a time goes from
   * holding to not holding on every release. Needed again meanwhile, it stays.
   */
  #lingerThenClose(): void {
    this.#unneededSince = performance.now();
    if (this.#linger === undefined) this.#armLinger(LINGER_MS);
  }

  #armLinger(ms: number): void {
    this.#linger = setTimeout(() => {
      this.#linger = undefined;
      if (this.#announced.size > 0 || this.#holding || this.#closed) return;
      const left = this.#unneededSince + LINGER_MS - performance.now();
      if (left >= 1) this.#armLinger(left);
      else void this.#drop();
    }, ms);
    this.#linger.unref();
  }

  async #drop(): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    this.#announced.clear();
    // Closed, not given back: its LISTEN and any announcement end with the session.
    if (conn) await conn.then(destroy, () => undefined);
  }
}

/** Closes a connection (released to the pool as broken); one released already is left alone. */
function destroy(c: PgClientLike): void {
  try {
    c.release(true);
  } catch {
    // The pool's own error handling released it first.
  }
}
