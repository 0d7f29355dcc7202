// A Lease is one grant from the backend, from the grant to its release or loss: its clocks (the
// deadline and the watchdog), its renewals, and the events it causes. Callers never see it: they hold
// Lock handles (src/lock.ts), several of them when a lease is re-entered.

import { performance } from 'node:perf_hooks';
import type { LeaseMode, LockBackend } from '../backend.js';
import { LockAcquisitionError, LockError, LockExpiredError, LockOwnershipError, LockReleaseError } from '../errors.js';
import { extendChannel, lostChannel, releaseChannel, trace, traced, type LockTraceContext } from './channels.js';
import { settleWithin } from './time.js';
import type { Deadlines, Expiring } from './deadlines.js';
import { Watchdog, type Renewable } from './watchdog.js';

/** What a lease needs from the Locksmith that granted it. */
export interface LeaseHost {
  readonly backend: LockBackend;
  readonly deadlines: Deadlines<Lease>;
  leaseEvent(type: 'extended' | 'released' | 'lost', lease: Lease, error?: LockError): void;
  leaseError(lease: Lease, error: unknown): void;
  /** A release of `key` has been sent (not yet confirmed). */
  releasing(key: string): void;
}

type LeaseState = 'held' | 'released' | 'lost';

export class Lease implements Renewable, Expiring {
  readonly key: string;
  readonly owner: string;
  readonly mode: LeaseMode;
  readonly fence: bigint;
  ttl: number;
  holds = 1;
  /** Recorded in the reentrancy registry (only owners that can re-enter are). */
  registered = false;
  state: LeaseState = 'held';
  /** Monotonic ms (performance.now) after which the lease may be gone. */
  deadline = 0;

  /** When the granting request was sent (performance.now()), for hold times. */
  grantedAt = 0;
  /** This process's turn on the key (src/core/turns.ts), passed on when the lease is let go. */
  turn: { leave(): void } | undefined;
  #controller: AbortController | undefined;
  #lostReason: LockExpiredError | undefined;
  #watchdog: Watchdog | undefined;
  /** Kept by Deadlines (Expiring): watched while 0 or more. */
  deadlineIndex = -1;
  /** The extension on its way to the backend, if any: a release waits for it (see release()). */
  #extending: Promise<boolean> | undefined;
  readonly #host: LeaseHost;

  constructor(host: LeaseHost, key: string, owner: string, mode: LeaseMode, fence: bigint, ttl: number) {
    this.#host = host;
    this.key = key;
    this.owner = owner;
    this.mode = mode;
    this.fence = fence;
    this.ttl = ttl;
  }

  /** Starts the clocks: `start` is when the grant was requested, so local validity errs on the short side. */
  begin(start: number, validity: number, autoRenew: boolean): void {
    this.grantedAt = start;
    this.#setValidity(start, validity);
    if (autoRenew) this.#watchdog = new Watchdog(this);
  }

  // The watchdog's view of the lease (Renewable).
  get live(): boolean {
    return this.state === 'held';
  }
  renew(): Promise<boolean> {
    return this.#renew(this.ttl);
  }
  refused(): void {
    this.lose(this.#goneError('renewal was refused: the lease is no longer held'));
  }
  failed(error: unknown): void {
    this.#host.leaseError(this, error);
  }
  // Deadlines' view (Expiring).
  expire(): void {
    this.lose(new LockExpiredError(`the lease on "${this.key}" expired after ${this.ttl} ms without renewal`, { key: this.key }));
  }

  /** The deadline as epoch ms, for people and logs: computed when read, as few callers read it. */
  get expiresAt(): number {
    return this.deadline === Infinity ? Infinity : Math.floor(Date.now() + (this.deadline - performance.now()));
  }

  get signal(): AbortSignal {
    // Created on first use: most short critical sections never look at it.
    this.#controller ??= new AbortController();
    if (this.#lostReason && !this.#controller.signal.aborted) this.#controller.abort(this.#lostReason);
    return this.#controller.signal;
  }

  get lostReason(): LockExpiredError | undefined {
    return this.#lostReason;
  }

  #setValidity(start: number, validity: number): void {
    this.deadline = start + validity;
    // Watching a lease already watched only looks at its new deadline.
    this.#host.deadlines.watch(this);
  }

  #goneError(message: string, cause?: unknown): LockExpiredError {
    return new LockExpiredError(`"${this.key}": ${message}`, { key: this.key, cause });
  }

  #renew(ttl: number): Promise<boolean> {
    if (!traced(extendChannel)) return this.#extend(ttl, undefined);
    return trace(extendChannel, this.#context(), (ctx) => this.#extend(ttl, ctx), 'extended');
  }

  #context(): LockTraceContext {
    return { key: this.key, backend: this.#host.backend.name, mode: this.mode, owner: this.owner, fence: this.fence };
  }

  async #extend(ttl: number, trace: LockTraceContext | undefined): Promise<boolean> {
    const start = performance.now();
    // A lease past its deadline is lost, even if the backend would still renew it (a paused process
    // whose renewal timer ran before its deadline timer): the holder must hear that it had no lock.
    if (start >= this.deadline) {
      this.expire();
      return false;
    }
    const pending = this.#host.backend.extend(this.key, this.owner, ttl);
    this.#extending = pending;
    let ok: boolean;
    try {
      ok = await pending;
    } finally {
      if (this.#extending === pending) this.#extending = undefined;
    }
    if (trace && !ok) trace.outcome = 'refused';
    if (ok && this.state === 'held') {
      this.ttl = ttl;
      // A lease kept by a connection (no local deadline) stays without one.
      if (this.deadline !== Infinity) this.#setValidity(start, ttl);
      this.#host.leaseEvent('extended', this);
    }
    return ok;
  }

  #stopClocks(): void {
    this.#watchdog?.stop();
    this.#host.deadlines.unwatch(this);
  }

  #passTurn(): void {
    const turn = this.turn;
    this.turn = undefined;
    turn?.leave();
  }

  /** Marks the lease lost: aborts the signal and tells the host. Idempotent, never throws. */
  lose(reason: LockExpiredError): void {
    if (this.state !== 'held') return;
    this.state = 'lost';
    this.#passTurn();
    this.#lostReason = reason;
    this.#stopClocks();
    this.#controller?.abort(reason);
    if (lostChannel.hasSubscribers) lostChannel.publish({ ...this.#context(), held: performance.now() - this.grantedAt, error: reason });
    this.#host.leaseEvent('lost', this, reason);
  }

  /** Explains a refusal: somebody else holds the key now, or nobody does (it expired). */
  async #whyGone(message: string): Promise<LockExpiredError> {
    let cause: LockOwnershipError | undefined;
    try {
      const info = await this.#host.backend.inspect(this.key);
      const other = info?.holders.find((h) => h.owner !== this.owner);
      if (other) cause = new LockOwnershipError(`"${this.key}" is now held by another owner`, { key: this.key, holder: other.owner });
    } catch {
      // Only the explanation is lost; the refusal itself stands.
    }
    return this.#goneError(cause ? `${message}; another owner holds it now` : `${message}; it had expired`, cause);
  }

  async extend(ttl: number): Promise<void> {
    if (this.state !== 'held') throw this.#notHeld('extend');
    let ok: boolean;
    try {
      ok = await this.#renew(ttl);
    } catch (error) {
      throw new LockAcquisitionError(`could not extend "${this.key}": the backend failed`, { key: this.key, cause: error });
    }
    if (!ok) {
      const reason = await this.#whyGone('extend was refused');
      this.lose(reason);
      throw reason;
    }
    if (this.state !== 'held') throw this.#notHeld('extend');
  }

  #notHeld(verb: string): LockExpiredError {
    if (this.state === 'lost' && this.#lostReason) return this.#lostReason;
    return this.#goneError(`cannot ${verb}: the lock was already released`);
  }

  /** Releases the backend lease (the last handle calls this). */
  release(): Promise<void> {
    if (!traced(releaseChannel)) return this.#release();
    const ctx = this.#context();
    ctx.held = performance.now() - this.grantedAt;
    return trace(releaseChannel, ctx, () => this.#release(), 'released');
  }

  async #release(): Promise<void> {
    const wasLost = this.state === 'lost';
    const before = this.#lostReason;
    this.#stopClocks();
    if (this.state === 'held') this.state = 'released';
    // An extension already sent could land after the release and, on a backend that re-creates a
    // lease on extend or orders commands per connection, leave it held or refuse the release. Wait for
    // it once (as node-redlock's using() does), no longer than the lease could live anyway.
    if (this.#extending) await settleWithin(this.#extending, Math.max(0, this.deadline - performance.now()));
    let ok: boolean;
    try {
      // Even a lease we consider lost is released: the server may still hold it for a moment, and the
      // owner check makes this harmless if someone else has it.
      // The next local waiter in line runs after this task, so after the release below is sent.
      this.#passTurn();
      const pending = this.#host.backend.release(this.key, this.owner, this.fence);
      // The release is on its way: a waiter in this process may try now. On a shared connection its
      // attempt goes out after the release and usually gets the lock one round trip sooner.
      this.#host.releasing(this.key);
      ok = await pending;
    } catch (error) {
      throw new LockReleaseError(`could not confirm the release of "${this.key}": the backend failed`, { key: this.key, cause: error });
    }
    if (wasLost) {
      throw new LockReleaseError(`"${this.key}" was lost before release`, { key: this.key, cause: before });
    }
    if (!ok) {
      const reason = await this.#whyGone('release found no lease');
      this.state = 'held';
      this.lose(reason);
      throw new LockReleaseError(`"${this.key}" was no longer held at release`, { key: this.key, cause: reason });
    }
    this.#host.leaseEvent('released', this);
  }
}
