// One script call of the Redis backend: runScript (EVALSHA, EVAL when the server lacks it), bounded by
// a deadline, its reply decoded by the script. Every lock pays this twice per acquire and release,
// so it is one object with its steps as methods: written as withTimeout(run(...).catch(...)) with a
// decoder, the same call built a dozen closures and promises and took an extra microtask (1.7 KB of
// a sequential acquire+release's allocation, with the async acquire it replaced).

import { performance } from 'node:perf_hooks';
import { Deadlines, type Expiring } from '../../core/deadlines.js';
import { runScript, type RedisAdapter } from './client.js';
import { badReply, failedCall, type Script } from './script.js';

/** The deadlines of every call in flight: one timer for all (unref'd: an answer keeps a process alive, not its bound). */
const bounds = new Deadlines<Call<unknown, unknown>>();

class Call<R, T> implements Expiring {
  readonly deadline: number;
  deadlineIndex = -1;
  #done = false;

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

  send(): void {
    bounds.watch(this as Call<unknown, unknown>);
    runScript(
      this.redis,
      this.s,
      this.keys,
      this.args,
      (raw) => this.#answered(raw),
      (error) => this.#failed(error),
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
      this.reject(badReply(this.s, this.key, error, raw));
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
    new Call(redis, s, key, keys, args, ms, then, resolve, reject).send();
  });
}
