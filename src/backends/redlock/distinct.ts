// Redlock's safety rests on independent servers: clients that reach one server (three clients on
// one local Redis is a common first try) would make one server's vote count three times. Each node
// says who it is (INFO server's run_id) before the first lock; a repeat is refused.

import { sleep, withTimeout } from '../../core/time.js';
import { LockArgumentError } from '../../errors.js';
import type { RedisAdapter } from '../redis/client.js';

const RUN_ID = /^run_id:([0-9a-f]+)\s*$/m;
/** How long a node may take to say who it is (a fresh connection's first command, on a busy host). */
const ASK_MS = 2_000;

/**
 * A check to await (when it returns a promise) before each lock. The first call waits until every
 * node has said who it is, or a quorum has and `timeout` more has passed (a node down or paused must
 * not hold the first lock up for longer than it would hold up a vote); it rejects with a
 * LockArgumentError when two nodes are one server. Later calls cost nothing: nodes that had not
 * answered are asked again in the background, and a repeat found meanwhile fails the next call.
 */
export function distinctServers(nodes: readonly RedisAdapter[], quorum: number, timeout: number): () => Promise<void> | undefined {
  const ids: (string | undefined)[] = nodes.map(() => undefined);
  let conflict: LockArgumentError | undefined;
  let asking: Promise<unknown> | undefined;
  let first: Promise<unknown> | undefined;
  const record = (i: number, id: string): void => {
    ids[i] = id;
    const j = ids.findIndex((other, k) => k !== i && other === id);
    if (j >= 0) {
      conflict ??= new LockArgumentError(
        `redlockBackend(): clients #${Math.min(i, j)} and #${Math.max(i, j)} reach the same Redis server (run_id ${id}); Redlock needs independent masters, one client each`,
      );
    }
  };
  /** Asks the nodes not known yet; resolves (never rejects) once every one answered or gave up. */
  const ask = (): { all: Promise<unknown>; enough: Promise<unknown> } => {
    let answered = ids.filter((id) => id !== undefined).length;
    let failed = 0;
    let reached!: () => void;
    const enough = new Promise<void>((resolve) => (reached = resolve));
    if (answered >= quorum) reached();
    const all = Promise.all(
      nodes.map(async (node, i) => {
        if (ids[i] !== undefined) return;
        try {
          const id = RUN_ID.exec(await withTimeout(node.info('server'), ASK_MS, () => new Error('no answer')))?.[1];
          if (id !== undefined) record(i, id);
          if (++answered >= quorum) reached();
        } catch {
          // Down or slow: asked again later. Once no quorum can answer, the vote will say so.
          if (++failed > nodes.length - quorum) reached();
        }
      }),
    ).finally(() => (asking = undefined));
    return { all, enough };
  };
  let settled = false;
  /** After the first check: the conflict found meanwhile, if any; nodes that never answered are asked again. */
  const after = (): Promise<void> | undefined => {
    if (conflict) return Promise.reject(conflict);
    if (!asking && ids.some((id) => id === undefined)) asking = ask().all;
    return undefined;
  };
  const check = async (): Promise<void> => {
    if (!first) {
      const { all, enough } = ask();
      asking = all;
      // Neither ever rejects (ask() catches every node's failure).
      first = Promise.race([all, enough.then(() => sleep(timeout))]);
      void first.then(() => (settled = true));
    }
    await first;
    await after();
  };
  // Once the first check is over, no promise per lock.
  return () => (settled ? after() : check());
}
