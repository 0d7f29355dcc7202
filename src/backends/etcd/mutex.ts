// Exclusive locks, as etcd's Mutex: the holder is the key with the lowest create revision under the
// name, and a waiter watches only the key just before its own. A release wakes exactly the next in
// line (no herd), and the line is FIFO by construction: revisions only grow, so no key is ever
// created ahead of one already waiting.

import type { Entry } from './keys.js';

export interface Verdict {
  granted: boolean;
  /** The caller's own key as listed (absent: it has none, a refused try). */
  me: Entry | undefined;
  /** Refused: the entry whose deletion may let the caller in; undefined: any key of the name. */
  watch: Entry | undefined;
}

const position = (entries: readonly Entry[], mine: Buffer): number => entries.findIndex((e) => e.key.equals(mine));

/** Holds iff no key of the name is older: readers and permits count, as they hold or wait ahead. */
export function exclusiveVerdict(entries: readonly Entry[], mine: Buffer): Verdict {
  const at = position(entries, mine);
  if (at < 0) return { granted: false, me: undefined, watch: undefined };
  return { granted: at === 0, me: entries[at], watch: entries[at - 1] };
}

export { position };
