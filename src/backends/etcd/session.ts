// Liveness, as etcd's concurrency.Session: one lease per backend instance, every lock key attached to
// it, kept alive over one keep-alive stream (two while one does not answer) every ttl/3. What matters
// for safety is how long the lease is *known* to live: etcd starts a keep-alive's TTL when the request
// arrives, which is after we sent it, so the lease lives at least until (send time + TTL) on our
// monotonic clock. That instant is `validUntil`; once it passes with no answer, the server may have
// expired the lease and given our locks away, so the session is declared lost there (not at etcd3's
// 2×TTL) and a fresh lease is granted for later locks. An answer of TTL 0 (revoked or expired) is a
// loss at once.

import { performance } from 'node:perf_hooks';
import type { CallOptions, KeepAliveStream, LeaseClient } from './client.js';
import { retryDelay } from './retry.js';

export interface Lease {
  readonly id: string;
  /** performance.now() ms until which the lease is known to live. */
  validUntil: number;
  lost: boolean;
}

/** A keep-alive stream, with the send times of its keep-alives not answered yet (it answers in order). */
interface Line {
  readonly stream: KeepAliveStream;
  readonly sent: number[];
}

type LossListener = (lease: Lease, reason: Error) => void;

/** Attempts to revoke a lost lease (backing off to one call's timeout apart) before leaving it to expire. */
const REVOKE_TRIES = 40;

export class Session {
  readonly #leases: LeaseClient;
  readonly #ttlSeconds: number;
  /** ms between keep-alives: a third of the TTL, as etcd's own clients. */
  readonly #every: number;
  readonly #timeout: number;
  readonly #onLoss: LossListener;
  #current: Promise<Lease> | undefined;
  /** The open keep-alive streams (one, or two while one does not answer). */
  #lines: Line[] = [];
  #opening: Promise<void> | undefined;
  #tick: NodeJS.Timeout | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #waiters: { until: number; resolve: () => void }[] = [];
  /** Lost leases whose revocation has not gone through yet: tries so far, calls in flight, the next try's timer. */
  readonly #revoking = new Map<Lease, { tries: number; inFlight: number; timer: NodeJS.Timeout | undefined }>();
  #closed = false;

  constructor(leases: LeaseClient, ttlMs: number, timeout: number, onLoss: LossListener) {
    this.#leases = leases;
    this.#ttlSeconds = Math.ceil(ttlMs / 1000);
    this.#every = Math.max(100, Math.floor((this.#ttlSeconds * 1000) / 3));
    this.#timeout = timeout;
    this.#onLoss = onLoss;
  }

  #options(): CallOptions {
    return { deadline: Date.now() + this.#timeout };
  }

  /** The live lease, granted on first use and again after a loss. */
  lease(): Promise<Lease> {
    if (this.#closed) return Promise.reject(new Error('the etcd session is closed'));
    if (!this.#current) {
      const sent = performance.now();
      const granting = this.#leases.leaseGrant({ TTL: this.#ttlSeconds }, this.#options()).then((r) => {
        const lease: Lease = { id: r.ID, validUntil: sent + Number(r.TTL) * 1000, lost: false };
        if (this.#closed) void this.#revoke(lease);
        else {
          this.#start(lease);
          this.#kickRevocations();
        }
        return lease;
      });
      // A failed grant is forgotten so the next call asks again.
      granting.catch(() => {
        if (this.#current === granting) this.#current = undefined;
      });
      this.#current = granting;
    }
    return this.#current;
  }

  /** Resolves once the lease is known to live until `until` (one keep-alive now if needed), or rejects after the timeout. */
  async cover(lease: Lease, until: number): Promise<void> {
    if (lease.validUntil >= until) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`etcd did not renew the session lease within ${this.#timeout} ms`));
      }, this.#timeout);
      timer.unref();
      const waiter = {
        until,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.#waiters.push(waiter);
      void this.#keepAlive(lease);
    });
    if (lease.lost) throw new Error('the etcd session lease was lost');
  }

  #start(lease: Lease): void {
    this.#tick = setInterval(() => void this.#keepAlive(lease), this.#every);
    this.#tick.unref();
    this.#armExpiry(lease);
    // A grant that came back late leaves less than two intervals: the first keep-alive goes now, so
    // that one lost to a member that does not answer still leaves time for a spare stream.
    if (lease.validUntil - performance.now() < 2 * this.#every) void this.#keepAlive(lease);
  }

  /**
   * Sends a keep-alive on every open stream. A stream whose oldest keep-alive is unanswered for two
   * intervals is given up (its member is gone or paused). And while every stream has one unanswered
   * for half an interval, a spare is opened beside it (up to two; the client picks a member at
   * random): a member that takes the stream but does not answer (one restarted after a majority loss
   * and still catching up) would otherwise keep the lease until it is lost, and its keys with it,
   * holding every waiter back; a merely slow link still answers on the first stream.
   */
  async #keepAlive(lease: Lease): Promise<void> {
    if (lease.lost || this.#closed) return;
    const now = performance.now();
    for (const line of [...this.#lines]) if (now - (line.sent[0] ?? now) > 2 * this.#every) this.#drop(line);
    const stalled = this.#lines.every((line) => now - (line.sent[0] ?? now) >= this.#every / 2);
    try {
      if (stalled && this.#lines.length < 2) await this.#open(lease);
    } catch {
      // the next tick tries again; validUntil decides the loss
    }
    for (const line of this.#lines) {
      line.sent.push(performance.now());
      try {
        line.stream.write({ ID: lease.id });
      } catch {
        this.#drop(line);
      }
    }
  }

  /** Opens one more keep-alive stream (one at a time: a tick and a cover() may ask together). */
  #open(lease: Lease): Promise<void> {
    this.#opening ??= this.#leases.leaseKeepAlive().then(
      (stream) => {
        this.#opening = undefined;
        if (lease.lost || this.#closed) return void stream.end();
        const line: Line = { stream, sent: [] };
        this.#lines.push(line);
        stream.on('data', (r) => this.#answered(lease, line, r.TTL));
        stream.on('error', () => this.#drop(line));
        stream.on('end', () => this.#drop(line));
      },
      (error: unknown) => {
        this.#opening = undefined;
        throw error;
      },
    );
    return this.#opening;
  }

  #answered(lease: Lease, line: Line, ttl: string): void {
    if (!this.#lines.includes(line)) return;
    const sent = line.sent.shift() ?? performance.now();
    if (Number(ttl) <= 0) return this.#lose(lease, new Error('etcd says the session lease expired or was revoked'));
    lease.validUntil = Math.max(lease.validUntil, sent + Number(ttl) * 1000);
    this.#armExpiry(lease);
    const ready = this.#waiters.filter((w) => w.until <= lease.validUntil);
    if (ready.length) this.#waiters = this.#waiters.filter((w) => w.until > lease.validUntil);
    for (const w of ready) w.resolve();
  }

  #drop(line: Line): void {
    const at = this.#lines.indexOf(line);
    if (at < 0) return;
    this.#lines.splice(at, 1);
    try {
      line.stream.cancel?.();
      line.stream.end();
    } catch {
      // already closed
    }
  }

  #armExpiry(lease: Lease): void {
    if (this.#expiry) clearTimeout(this.#expiry);
    this.#expiry = setTimeout(
      () => {
        if (performance.now() >= lease.validUntil)
          this.#lose(lease, new Error('the session lease could not be kept alive: etcd may have expired it'));
        else this.#armExpiry(lease);
      },
      Math.max(0, Math.ceil(lease.validUntil - performance.now())),
    );
    this.#expiry.unref();
  }

  #stop(): void {
    if (this.#tick) clearInterval(this.#tick);
    if (this.#expiry) clearTimeout(this.#expiry);
    this.#tick = this.#expiry = undefined;
    for (const line of [...this.#lines]) this.#drop(line);
  }

  #lose(lease: Lease, reason: Error): void {
    if (lease.lost) return;
    lease.lost = true;
    this.#stop();
    this.#current = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
    this.#revokeLost(lease);
    this.#onLoss(lease, reason);
  }

  /**
   * If the server still has a lost lease (we only lost touch), revoking it frees its keys now rather
   * than at its TTL, which etcd restarts whenever a new leader takes over: after a majority loss, a
   * lost session's keys would hold every waiter back for seconds after the cluster is back. So it is
   * tried until it goes through or etcd no longer knows the lease: again at once after a try that
   * waited out its deadline (etcd holds a write while it has no leader), and at once when a new lease
   * is granted (the cluster commits again), so the keys go within a round trip of the cluster's return.
   */
  #revokeLost(lease: Lease): void {
    let pending = this.#revoking.get(lease);
    if (!pending) this.#revoking.set(lease, (pending = { tries: 0, inFlight: 0, timer: undefined }));
    clearTimeout(pending.timer);
    pending.timer = undefined;
    pending.inFlight += 1;
    const sent = performance.now();
    this.#leases.leaseRevoke({ ID: lease.id }, this.#options()).then(
      () => {
        clearTimeout(pending.timer);
        this.#revoking.delete(lease);
      },
      (error: unknown) => {
        pending.inFlight -= 1;
        pending.tries += 1;
        const gone = error instanceof Error && /lease not found|expired or revoked/.test(error.message);
        if (gone || this.#closed || pending.tries >= REVOKE_TRIES) this.#revoking.delete(lease);
        // Another try is under way (a kick sent one): it decides what comes next.
        if (this.#revoking.get(lease) !== pending || pending.inFlight > 0 || pending.timer) return;
        pending.timer = setTimeout(() => this.#revokeLost(lease), retryDelay(pending.tries, sent, this.#timeout));
        pending.timer.unref();
      },
    );
  }

  /** The cluster answers again: every lost lease still to revoke is tried now, not at its next retry. */
  #kickRevocations(): void {
    for (const lease of [...this.#revoking.keys()]) this.#revokeLost(lease);
  }

  #revoke(lease: Lease): Promise<void> {
    return this.#leases.leaseRevoke({ ID: lease.id }, this.#options()).then(
      () => undefined,
      () => undefined,
    );
  }

  /** Revokes the lease (deleting every key on it) and stops keeping it alive. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const { timer } of this.#revoking.values()) clearTimeout(timer);
    this.#revoking.clear();
    const current = this.#current;
    this.#current = undefined;
    this.#stop();
    const lease = await current?.catch(() => undefined);
    if (lease && !lease.lost) {
      lease.lost = true;
      await this.#revoke(lease);
    }
  }
}
