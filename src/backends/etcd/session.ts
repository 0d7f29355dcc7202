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

export interface Lease {
  readonly id: string;
  /** performance.now() ms until which the lease is known to live. */
  validUntil: number;
  lost: boolean;
}

type LossListener = (lease: Lease, reason: Error) => void;

/** Attempts to revoke a lost lease (backing off to one TTL apart) before leaving it to expire. */
const REVOKE_TRIES = 20;

export class Session {
  readonly #leases: LeaseClient;
  readonly #ttlSeconds: number;
  readonly #timeout: number;
  readonly #onLoss: LossListener;
  #current: Promise<Lease> | undefined;
  #stream: KeepAliveStream | undefined;
  /** Send times of keep-alives not answered yet (a stream answers in order). */
  #sent: number[] = [];
  #tick: NodeJS.Timeout | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #waiters: { until: number; resolve: () => void }[] = [];
  /** Timers of revocations of lost leases to try again. */
  readonly #retries = new Set<NodeJS.Timeout>();
  #closed = false;

  constructor(leases: LeaseClient, ttlMs: number, timeout: number, onLoss: LossListener) {
    this.#leases = leases;
    this.#ttlSeconds = Math.ceil(ttlMs / 1000);
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
        else this.#start(lease);
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
    const every = Math.max(100, Math.floor((this.#ttlSeconds * 1000) / 3));
    this.#tick = setInterval(() => void this.#keepAlive(lease), every);
    this.#tick.unref();
    this.#armExpiry(lease);
  }

  async #keepAlive(lease: Lease): Promise<void> {
    if (lease.lost || this.#closed) return;
    // A request unanswered for two intervals: the stream's member is gone or paused; start over (the
    // client picks a member again). One interval would give up on a merely slow link.
    const oldest = this.#sent[0];
    if (oldest !== undefined && performance.now() - oldest > (this.#ttlSeconds * 2000) / 3) this.#drop();
    try {
      const stream = this.#stream ?? (await this.#open(lease));
      this.#sent.push(performance.now());
      stream.write({ ID: lease.id });
    } catch {
      this.#drop(); // the next tick tries again; validUntil decides the loss
    }
  }

  async #open(lease: Lease): Promise<KeepAliveStream> {
    const stream = await this.#leases.leaseKeepAlive();
    if (this.#stream) {
      stream.end();
      return this.#stream;
    }
    this.#stream = stream;
    stream.on('data', (r) => this.#answered(lease, stream, r.TTL));
    stream.on('error', () => this.#drop(stream));
    stream.on('end', () => this.#drop(stream));
    return stream;
  }

  #answered(lease: Lease, stream: KeepAliveStream, ttl: string): void {
    if (stream !== this.#stream) return;
    const sent = this.#sent.shift() ?? performance.now();
    if (Number(ttl) <= 0) return this.#lose(lease, new Error('etcd says the session lease expired or was revoked'));
    lease.validUntil = Math.max(lease.validUntil, sent + Number(ttl) * 1000);
    this.#armExpiry(lease);
    const ready = this.#waiters.filter((w) => w.until <= lease.validUntil);
    if (ready.length) this.#waiters = this.#waiters.filter((w) => w.until > lease.validUntil);
    for (const w of ready) w.resolve();
  }

  #drop(stream = this.#stream): void {
    if (!stream || stream !== this.#stream) return;
    this.#stream = undefined;
    this.#sent = [];
    try {
      stream.cancel?.();
      stream.end();
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
    this.#drop();
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
   * tried until it goes through or etcd no longer knows the lease, backing off to one TTL.
   */
  #revokeLost(lease: Lease, tries = 0): void {
    this.#leases.leaseRevoke({ ID: lease.id }, this.#options()).then(
      () => undefined,
      (error: unknown) => {
        const gone = error instanceof Error && /lease not found|expired or revoked/.test(error.message);
        if (gone || this.#closed || tries >= REVOKE_TRIES) return;
        const timer = setTimeout(
          () => {
            this.#retries.delete(timer);
            this.#revokeLost(lease, tries + 1);
          },
          Math.min(this.#ttlSeconds * 1000, 50 * 2 ** tries),
        );
        timer.unref();
        this.#retries.add(timer);
      },
    );
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
    for (const timer of this.#retries) clearTimeout(timer);
    this.#retries.clear();
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
