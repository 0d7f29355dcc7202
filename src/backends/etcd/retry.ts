// When to try again a call whose failure leaves keys that hold everyone back: a release or a cleanup
// of keys left behind (holds.ts), and the revocation of a lost session lease (session.ts).

import { performance } from 'node:perf_hooks';

/**
 * How long after a failed call to try again. Soon, since a call that failed on one member (killed, or
 * without a leader during an election) usually goes through on the next; backing off to one call's
 * timeout, counted from when the failed call was sent: a call that waited out its deadline (etcd
 * holds a write while it has no leader) has waited enough, and is tried again at once.
 */
export function retryDelay(retries: number, sent: number, timeout: number): number {
  return Math.max(0, Math.min(timeout, 25 * 2 ** retries) - (performance.now() - sent));
}
