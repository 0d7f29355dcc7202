// Wake-ups: a release publishes the lease key on "<prefix>wake" when someone was refused meanwhile.
// One subscriber connection per server serves every waiter of a backend instance (so connections do
// not grow with waiters); waiters park by lease key in one keyed set.

import { Wakers } from '../shared/wakers.js';
import type { RedisAdapter, Subscription } from './client.js';

export class WakeChannel {
  readonly #nodes: readonly RedisAdapter[];
  readonly #channel: string;
  readonly #listeners = new Wakers();
  #subscriptions: Subscription[] | undefined;
  #ready: Promise<void> | undefined;
  #isReady = false;
  #closed = false;

  /** `nodes`: every server a release may publish on (Redlock: each node). */
  constructor(nodes: readonly RedisAdapter[], channel: string) {
    this.#nodes = nodes;
    this.#channel = channel;
  }

  /** Wakes this instance's waiters on `lease` (a release made here: no need to hear it from the server). */
  wake(lease: string): void {
    this.#listeners.wake(lease);
  }

  has(lease: string): boolean {
    return this.#listeners.has(lease);
  }

  /**
   * Resolves on the next wake-up of `lease` (maybe spuriously), or once `signal` aborts; rejects when
   * no server could be subscribed to (the core then falls back to polling).
   */
  wait(lease: string, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted || this.#closed) return resolve();
      const withdraw = this.#listeners.add(lease, () => wake());
      const forget = (): void => {
        signal.removeEventListener('abort', wake);
        withdraw();
      };
      const wake = (): void => {
        forget();
        resolve();
      };
      signal.addEventListener('abort', wake, { once: true });
      // Until a subscriber is confirmed a release could go unheard: when it is, wake once
      // (spuriously) so the waiter tries again with the subscription in place.
      const wasReady = this.#isReady;
      this.#subscribed().then(
        () => {
          if (!wasReady) wake();
        },
        (error: unknown) => {
          forget();
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /** The subscribers, made on first wait: ready once one server confirms. A failed attempt is forgotten so a later wait retries. */
  #subscribed(): Promise<void> {
    if (!this.#ready) {
      const subs = this.#nodes.map((node) => node.subscribe(this.#channel, (lease) => this.#listeners.wake(lease)));
      const ready = Promise.any(subs.map((s) => s.ready)).then(
        () => void (this.#isReady = this.#ready === ready),
        async (error: unknown) => {
          if (this.#ready === ready) this.#ready = this.#subscriptions = undefined;
          await Promise.all(subs.map((s) => s.close()));
          throw error instanceof AggregateError ? (error.errors[0] as Error) : error;
        },
      );
      this.#subscriptions = subs;
      this.#ready = ready;
    }
    return this.#ready;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.wakeAll();
    const subs = this.#subscriptions ?? [];
    this.#subscriptions = this.#ready = undefined;
    this.#isReady = false;
    await Promise.all(subs.map((s) => s.close()));
  }
}
