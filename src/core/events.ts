// The engine's voice: typed events for listeners, and the one place an error with no caller to throw
// to ends up. Such an error is never dropped: it goes to 'error' listeners, else to the `logger`
// option, else to process.emitWarning (once per kind, so a flapping backend cannot flood stderr).

import { EventEmitter } from 'node:events';
import type { LeaseMode } from '../backend.js';
import type { LockExpiredError } from '../errors.js';
import type { Logger } from '../options.js';
import { errorChannel } from './channels.js';

export interface LockEvent {
  key: string;
  owner: string;
  fence: bigint;
  mode: LeaseMode;
}

export interface LocksmithEvents {
  acquired: (event: LockEvent & { waited: number }) => void;
  released: (event: LockEvent) => void;
  extended: (event: LockEvent & { expiresAt: number }) => void;
  lost: (event: LockEvent & { error: LockExpiredError }) => void;
  error: (error: unknown, event?: Partial<LockEvent>) => void;
}

/** What went wrong, for the logger and for once-per-kind warnings. */
export type ErrorKind = 'release' | 'renewal' | 'listener' | 'withdraw' | 'recipe';

export class Events {
  readonly #emitter = new EventEmitter();
  readonly #logger: Logger | undefined;
  readonly #warned = new Set<ErrorKind>();
  /**
   * Listeners per event, kept as they come and go (once() listeners too): read on every grant and
   * release, where the emitter's listenerCount() was a measurable part of an in-process lock.
   */
  readonly #listening = new Map<string | symbol, number>();

  constructor(logger: Logger | undefined) {
    this.#logger = logger;
    const count = (event: string | symbol, by: number): void => {
      this.#listening.set(event, (this.#listening.get(event) ?? 0) + by);
    };
    this.#emitter.on('newListener', (event: string | symbol) => count(event, 1));
    this.#emitter.on('removeListener', (event: string | symbol) => count(event, -1));
  }

  on<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): void {
    this.#emitter.on(event, listener);
  }

  once<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): void {
    this.#emitter.once(event, listener);
  }

  off<E extends keyof LocksmithEvents>(event: E, listener: LocksmithEvents[E]): void {
    this.#emitter.off(event, listener);
  }

  /** Someone listens for `event` (callers skip building a payload nobody reads). */
  heard(event: keyof LocksmithEvents): boolean {
    return (this.#listening.get(event) ?? 0) > 0;
  }

  /** Emits `event`; a throwing listener is reported, never thrown into the lock machinery. */
  emit<E extends Exclude<keyof LocksmithEvents, 'error'>>(event: E, payload: Parameters<LocksmithEvents[E]>[0]): void {
    try {
      this.#emitter.emit(event, payload);
    } catch (listenerError) {
      this.report(listenerError, payload, 'listener');
    }
  }

  /** Reports an error that has no caller to throw to. Never throws itself. */
  report(error: unknown, event: Partial<LockEvent> | undefined, kind: ErrorKind): void {
    if (errorChannel.hasSubscribers) errorChannel.publish({ error, kind, ...event });
    if (this.#emitter.listenerCount('error') > 0) {
      try {
        this.#emitter.emit('error', error, event);
      } catch {
        // A throwing 'error' listener must not break the lock machinery.
      }
      return;
    }
    if (this.#logger) {
      try {
        this.#logger.error({ err: error, kind, key: event?.key }, `locksmith: ${kind} failed`);
      } catch {
        // Nor a throwing logger.
      }
      return;
    }
    if (this.#warned.has(kind)) return;
    this.#warned.add(kind);
    const message = error instanceof Error ? error.message : String(error);
    process.emitWarning(`locksmith: a ${kind} failed with no 'error' listener and no logger: ${message}`, {
      type: 'LocksmithWarning',
      code: `LOCKSMITH_${kind.toUpperCase()}`,
      detail: 'Further failures of this kind are not reported. Listen for "error" or pass a logger.',
    });
  }
}
