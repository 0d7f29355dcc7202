// Shared leases. Read locks follow etcd's RWMutex recipe: a reader waits only for exclusive keys older
// than its own (writers that hold or queued first), so it watches the youngest such writer. A
// semaphore of `limit` permits is held by the `limit` oldest keys; its waiter needs any older key to
// go, so it watches the whole name for a delete (waiters of one semaphore share that wake-up).

import type { Entry } from './keys.js';
import { position, type Verdict } from './mutex.js';

/** Whether the shared key at `at` holds: no older writer, and within the limit (0: none). */
export function holdsShared(entries: readonly Entry[], at: number, limit: number): boolean {
  for (let i = 0; i < at; i++) if (entries[i]!.mode === 'w') return false;
  return limit === 0 || at < limit;
}

export function sharedVerdict(entries: readonly Entry[], mine: Buffer, limit: number): Verdict {
  const at = position(entries, mine);
  if (at < 0) return { granted: false, me: undefined, watch: undefined };
  const me = entries[at];
  if (holdsShared(entries, at, limit)) return { granted: true, me, watch: undefined };
  let writer: Entry | undefined;
  for (let i = at - 1; i >= 0 && !writer; i--) if (entries[i]!.mode === 'w') writer = entries[i];
  return { granted: false, me, watch: writer };
}
