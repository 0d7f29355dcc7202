// Who holds a name, as the server sees it: pg_locks (the advisory locks on the name's key and its
// semaphore slot keys, with their sessions) and each holder's fence from its marker (sql.ts). Holders
// on this instance's own sessions are shown with their owner and deadline from the bookkeeping.
// Other instances' holders: their owners are asked for over the wake-up channel (Questions below; an
// instance that holds locks keeps its wake-up connection open to answer), and an instance that does
// not answer within ASK_MS is shown by its session's name (`locksmith:<instance>`); their expiry is
// not known here (Infinity). Another program's advisory lock on the key is shown as `pid:<pid>`.
// Nothing of this costs a grant or a release anything: only inspect pays.

import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import type { LeaseHolder, LockInfo } from '../../backend.js';
import { settleWithin } from '../../core/time.js';
import type { Hold } from './holds.js';
import { slotKey } from './keys.js';
import type { Row } from './client.js';

/** Semaphores take one advisory key per slot; every attempt tries them all, so keep them few. */
export const MAX_SLOTS = 1024;

/** The name's key followed by every slot key it can have (inspect does not know a semaphore's limit). */
export function inspectKeys(nameKey: bigint): string[] {
  return [nameKey, ...Array.from({ length: MAX_SLOTS }, (_, i) => slotKey(nameKey, i))].map(String);
}

/** How long inspect waits for other instances to say who holds their locks. */
const ASK_MS = 500;

/**
 * The holders of `key` from INSPECT's rows; `local` are this instance's holds on it, `pids` its
 * sessions'. `remote`: the fences held by other instances, whose owners are still to be asked for.
 */
export function holdersOf(
  key: string,
  nameKey: bigint,
  rows: Row[],
  local: Iterable<Hold>,
  pids: Set<number>,
): { info: LockInfo; remote: Set<string> } | null {
  if (rows.length === 0) return null;
  const remote = new Set<string>();
  const mine = new Map<string, Hold>();
  for (const h of local) mine.set(String(h.fence), h);
  const wallOffset = Date.now() - performance.now();
  let exclusive = false;
  const holders: LeaseHolder[] = rows.map((r) => {
    const onName = r.k === String(nameKey);
    if (onName && r.mode === 'ExclusiveLock') exclusive = true;
    if (typeof r.fence !== 'string') return { owner: `pid:${String(r.pid)}`, fence: 0n, expiresAt: Infinity };
    const hold = pids.has(Number(r.pid)) ? mine.get(r.fence) : undefined;
    if (hold) return { owner: hold.owner, fence: hold.fence, expiresAt: Math.floor(hold.deadline + wallOffset) };
    remote.add(r.fence);
    return { owner: typeof r.app === 'string' && r.app ? r.app : `pid:${String(r.pid)}`, fence: BigInt(r.fence), expiresAt: Infinity };
  });
  return { info: { key, mode: exclusive ? 'exclusive' : 'shared', holders }, remote };
}

/** Payloads: a question "?<id>:<name key>", an answer "!<id>:<fence>:<owner>". */
const QUESTION = /^\?([0-9a-z]{1,24}):(-?[0-9]{1,20})$/;
const ANSWER = /^!([0-9a-z]{1,24}):([0-9]{1,20}):(.+)$/s;

/** Other instances' owners, asked for over the wake-up channel (anyone may NOTIFY it: payloads are checked, owners are only shown). */
/** When an unanswered question is asked again, ms after the first (within ASK_MS). */
const RESEND_MS = [50, 150, 250, 350] as const;

export class Questions {
  readonly #prefix = randomBytes(4).toString('hex');
  #next = 0;
  readonly #asked = new Map<string, (fence: string, owner: string) => void>();
  readonly #say: (payload: string) => Promise<void>;
  readonly #holdsOf: (nameKey: bigint) => Hold[];

  constructor(say: (payload: string) => Promise<void>, holdsOf: (nameKey: bigint) => Hold[]) {
    this.#say = say;
    this.#holdsOf = holdsOf;
  }

  /** The owners of `fences` on `nameKey`, by fence, as far as they answered within ASK_MS. */
  async ask(nameKey: bigint, fences: Set<string>): Promise<Map<string, string>> {
    const id = `${this.#prefix}${(this.#next += 1).toString(36)}`;
    const found = new Map<string, string>();
    let all!: () => void;
    const answered = new Promise<void>((resolve) => (all = resolve));
    this.#asked.set(id, (fence, owner) => {
      if (!fences.has(fence)) return;
      found.set(fence, owner);
      if (found.size === fences.size) all();
    });
    const question = `?${id}:${nameKey}`;
    try {
      await this.#say(question);
      // A holder that has just taken its lock may still be opening its wake-up connection when the
      // question goes out, and a NOTIFY reaches only those listening then: ask again a little later.
      let waited = 0;
      for (const at of RESEND_MS) {
        await settleWithin(answered, at - waited);
        waited = at;
        if (found.size === fences.size) break;
        await this.#say(question);
      }
      if (found.size < fences.size) await settleWithin(answered, ASK_MS - waited);
    } catch {
      // No wake-up connection: the holders stay shown by their instance.
    } finally {
      this.#asked.delete(id);
    }
    return found;
  }

  /** A question (answered for this instance's holds) or an answer (to one of ours). */
  heard(payload: string): void {
    const answer = ANSWER.exec(payload);
    if (answer) return this.#asked.get(answer[1]!)?.(answer[2]!, answer[3]!);
    const question = QUESTION.exec(payload);
    if (!question || question[1]!.startsWith(this.#prefix)) return;
    for (const h of this.#holdsOf(BigInt(question[2]!))) this.#say(`!${question[1]!}:${h.fence}:${h.owner}`).catch(() => undefined);
  }
}
