// One script call of the Redis backend: EVALSHA (EVAL when the server lacks the script), bounded by
// a deadline, its reply decoded by the script. Every lock pays this twice per acquire and release,
// so it is one object with its steps as methods: written as withTimeout(run(...).catch(...)) with a
// decoder, the same call built a dozen closures and promises and took an extra microtask (1.7 KB of
// a sequential acquire+release's allocation, with the async acquire it replaced).

import { performance } from 'node:perf_hooks';
import { Deadlines, type Expiring } from '../../core/deadlines.js';
import type { RedisAdapter } from './client.js';
import { failedCall, noScript, type Script } from './script.js';

/** The deadlines of every call in flight: one timer for all (unref'd: an answer keeps a process alive, not its bound). */
const bounds = new Deadlines<Call<unknown, unknown>>();

class Call<R, T> implements Expiring {
  readonly deadline: number;
  deadlineIndex = -1;
  #done = false;
  #retried = false;

  constructor(
    readonly redis: RedisAdapter,
    readonly s: Script<R>,
    readonly key: string,
    readonly keys: string[],
    readonly args: (string | number)[],
    readonly ms: number,
    readonly then: ((value: R) => T | Promise<T>) | undefined,
    readonly resolve: (value: T | Promise<T>) => void,
    readonly reject: (error: unknown) => void,
  ) {
    this.deadline = performance.now() + ms;
  }

  send(sent: Promise<unknown>): void {
    bounds.watch(this as Call<unknown, unknown>);
    sent.then(
      (raw) => this.#answered(raw),
      (error: unknown) => this.#failed(error),
    );
  }

  expire(): void {
    // A late answer is dropped (see #answered): a lease it granted expires, or the core withdraws it.
    this.#done = true;
    this.reject(new Error(`Redis did not answer within ${this.ms} ms`));
  }

  #answered(raw: unknown): void {
    if (this.#done) return;
    this.#done = true;
    bounds.unwatch(this as Call<unknown, unknown>);
    let value: R;
    try {
      value = this.s.decode(raw);
    } catch (error) {
      this.reject(failedCall(this.s, this.key, error, raw));
      return;
    }
    if (!this.then) {
      this.resolve(value as unknown as T);
      return;
    }
    try {
      this.resolve(this.then(value));
    } catch (error) {
      this.reject(error);
    }
  }

  #failed(error: unknown): void {
    if (this.#done) return;
    // A server restarted (or flushed of scripts) since we last ran it: once with the source, which also caches it.
    if (!this.#retried && noScript(error)) {
      this.#retried = true;
      this.redis.eval(this.s, this.keys, this.args).then(
        (raw) => this.#answered(raw),
        (e: unknown) => this.#failed(e),
      );
      return;
    }
    this.#done = true;
    bounds.unwatch(this as Call<unknown, unknown>);
    this.reject(failedCall(this.s, this.key, error));
  }
}

/**
 * Runs `s` on `keys` and `args` (about the lock `key`, for errors): its decoded reply, or an error
 * after `ms`. `then` takes the reply further in the same step, where a caller's own then() or async
 * function would cost another promise and microtask (the acquire's bookkeeping, say).
 */
export function callScript<R, T = R>(
  redis: RedisAdapter,
  s: Script<R>,
  key: string,
  keys: string[],
  args: (string | number)[],
  ms: number,
  then?: (value: R) => T | Promise<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    new Call(redis, s, key, keys, args, ms, then, resolve, reject).send(redis.evalsha(s, keys, args));
  });
}
