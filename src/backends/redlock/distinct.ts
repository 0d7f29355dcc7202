// Redlock's safety rests on independent servers: clients that reach one server (three clients on
// one local Redis is a common first try) would make one server's vote count three times. Each node
// says who it is (INFO server's run_id) before the first lock; a repeat is refused.

import { withTimeout } from '../../core/time.js';
import { LockArgumentError } from '../../errors.js';
import type { RedisAdapter } from '../redis/client.js';

const RUN_ID = /^run_id:([0-9a-f]+)\s*$/m;

/**
 * A check to await before each lock: the first call waits for every node's run_id (a node that does
 * not answer within `timeout` is left out) and rejects with a LockArgumentError when two nodes are one
 * server. Later calls cost nothing: nodes that had not answered are asked again in the background,
 * and a repeat they reveal fails the next call.
 */
export function distinctServers(nodes: readonly RedisAdapter[], timeout: number): () => Promise<void> {
  const ids: (string | undefined)[] = nodes.map(() => undefined);
  let first: Promise<void> | undefined;
  let again: Promise<void> | undefined;
  let conflict: LockArgumentError | undefined;
  const learn = async (): Promise<void> => {
    await Promise.all(
      nodes.map(async (node, i) => {
        if (ids[i] !== undefined) return;
        try {
          ids[i] = RUN_ID.exec(await withTimeout(node.info('server'), timeout, () => new Error('no answer')))?.[1];
        } catch {
          // Down or slow: asked again later.
        }
      }),
    );
    const seen = new Map<string, number>();
    for (const [i, id] of ids.entries()) {
      if (id === undefined) continue;
      const j = seen.get(id);
      if (j !== undefined) {
        conflict ??= new LockArgumentError(
          `redlockBackend(): clients #${j} and #${i} reach the same Redis server (run_id ${id}); Redlock needs independent masters, one client each`,
        );
      }
      seen.set(id, i);
    }
  };
  return async () => {
    first ??= learn();
    await first;
    if (conflict) throw conflict;
    if (!again && ids.some((id) => id === undefined)) again = learn().finally(() => (again = undefined));
  };
}
