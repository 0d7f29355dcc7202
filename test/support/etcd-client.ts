// etcd3's fault handling as docs/backends/etcd.md recommends running it: no circuit breaker per
// member (etcd3's default shuns a member for 5 s after three failures, and with one host that is
// every call: the two retries of a call that waited out its deadline fail at once, as the deadline
// has passed, and count), and its retry of a call that could not reach its member, to the next one.

import { isRecoverableError, type IOptions } from 'etcd3';

/** A cockatiel policy that runs each call once, as is (etcd3's own per member is a circuit breaker). */
const NO_POLICY = {
  execute: <T>(fn: (context: { signal: AbortSignal; attempt: number }) => T) =>
    new Promise<T>((resolve) => resolve(fn({ signal: new AbortController().signal, attempt: 0 }))),
} as never;

/**
 * etcd3's default around a whole call: a call that failed for want of a connection (a killed member)
 * is sent again, to the next member of the call's shuffled list, at most twice more.
 */
const NEXT_MEMBER = {
  async execute<T>(fn: (context: { signal: AbortSignal; attempt: number }) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn({ signal: new AbortController().signal, attempt });
      } catch (error) {
        if (attempt >= 2 || !(error instanceof Error) || !isRecoverableError(error)) throw error;
      }
    }
  },
} as never;

export const faultHandling: IOptions['faultHandling'] = { host: () => NO_POLICY, global: NEXT_MEMBER };
