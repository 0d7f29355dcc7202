// Asking every Redlock node at once, and counting the answers as votes.

import { performance } from 'node:perf_hooks';
import type { Deadlines, Expiring } from '../../core/deadlines.js';
import type { NodeOutcome } from '../../errors.js';
import { runScript, type RedisAdapter } from '../redis/client.js';
import type { Script } from '../redis/script.js';

export type Vote<T> = { ok: true; value: T } | { ok: false; timeout: boolean; error: string };
/** One vote per node; undefined where the node had not answered when the call settled. */
export type Votes<T> = (Vote<T> | undefined)[];

/** What every call of one backend shares: its nodes, the quorum, how long to wait for a node, and one timer. */
export interface Cluster {
  readonly nodes: readonly RedisAdapter[];
  readonly quorum: number;
  /** ms */
  readonly timeout: number;
  readonly deadlines: Deadlines<Expiring>;
}

/**
 * Runs `s` on every node at once; each answer, error or timeout is a vote. Resolves once a quorum of
 * answers `counts` (a quorum said yes: waiting for stragglers only adds latency) or every node has
 * voted. The calls of a backend share one timer (Deadlines): a call that settles in time, as nearly
 * all do, neither arms nor clears one.
 */
export function ask<T>(
  cluster: Cluster,
  s: Script<T>,
  keys: string[],
  args: (string | number)[],
  counts?: (value: T) => boolean,
): Promise<Votes<T>> {
  const { nodes, quorum, timeout, deadlines } = cluster;
  return new Promise((resolve) => {
    const votes: Votes<T> = new Array<Vote<T> | undefined>(nodes.length);
    let settled = 0;
    let ayes = 0;
    let done = false;
    const vote = (i: number, v: Vote<T>): void => {
      if (done || votes[i] !== undefined) return;
      votes[i] = v;
      settled += 1;
      if (v.ok && counts?.(v.value)) ayes += 1;
      if (settled === nodes.length || ayes >= quorum) {
        // Votes that come later are not counted: the array handed out stays as it is.
        done = true;
        deadlines.unwatch(call);
        resolve(votes);
      }
    };
    const call: Expiring = {
      deadline: performance.now() + timeout,
      deadlineIndex: -1,
      expire() {
        for (let i = 0; i < nodes.length; i++) vote(i, { ok: false, timeout: true, error: `no answer within ${timeout} ms` });
      },
    };
    deadlines.watch(call);
    const answered = (i: number, reply: unknown): void => {
      if (done) return;
      let value: T;
      try {
        value = s.decode(reply);
      } catch (error) {
        return vote(i, { ok: false, timeout: false, error: `unexpected reply: ${String(error)}` });
      }
      vote(i, { ok: true, value });
    };
    const failed = (i: number, error: unknown): void =>
      vote(i, { ok: false, timeout: false, error: error instanceof Error ? error.message : String(error) });
    for (let i = 0; i < nodes.length; i++) {
      runScript(
        nodes[i]!,
        s,
        keys,
        args,
        (reply) => answered(i, reply),
        (error) => failed(i, error),
      );
    }
  });
}

export const yes = (votes: Votes<boolean>): number => votes.filter((v) => v?.ok === true && v.value).length;
export const failures = (votes: Votes<unknown>): number => votes.filter((v) => v !== undefined && !v.ok).length;

/**
 * When a quorum could next grant, ms from now: a node that granted could at once, one that refused
 * when the lease it holds ends, one that failed never as far as we know. Counting only refusals would
 * leave a waiter without a time whenever nodes are down, and it would sleep its whole backoff while
 * the one lease that stands between it and a quorum runs out (the safety suite's minority loss).
 */
export function quorumFreeIn<T>(votes: Votes<T>, quorum: number, freeIn: (value: T) => number | undefined): number | undefined {
  const at = votes.map((v) => (v?.ok === true ? (freeIn(v.value) ?? Infinity) : Infinity)).sort((a, b) => a - b);
  const t = at[quorum - 1];
  return t === undefined || t === Infinity ? undefined : t;
}

/** Per-node outcomes for an error's `nodes`. */
export function outcomes<T>(votes: Votes<T>, granted: (value: T) => boolean): NodeOutcome[] {
  return votes.map((v, i) =>
    v === undefined
      ? { node: `#${i}`, outcome: 'timeout', error: 'still pending' }
      : v.ok
        ? { node: `#${i}`, outcome: granted(v.value) ? 'granted' : 'held' }
        : { node: `#${i}`, outcome: v.timeout ? 'timeout' : 'error', error: v.error },
  );
}
