// Redlock: one lock over N independent Redis masters, as specified by Redis. The same owner asks every
// node at once (the Redis backend's scripts, with a short per-node timeout); the lock is held only if
// a majority granted it and some validity is left: ttl − elapsed (monotonic) − drift (ttl × driftFactor
// + 2 ms). Otherwise what was granted is released on every node at once.
//
// Fences: each node keeps its own counter, so the quorum's token is the highest fence among the nodes
// that granted, written back to them (FENCE_SYNC) before it is returned. Any later majority overlaps
// this one, so its token is higher. That holds while no node loses its counter and rejoins within one
// lease: run the nodes with persistence, or keep a restarted node out for one max ttl.

import type { AcquireRequest, AcquireResult, LockBackend, LockInfo } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError, type NodeOutcome } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption, prefixOption } from '../shared/checks.js';
import { adapt, script, type RedisAdapter } from '../redis/client.js';
import { keysFor } from '../redis/index.js';
import { ACQUIRE, EXTEND, FENCE_SYNC, INSPECT, RELEASE } from '../redis/scripts.js';

export interface RedlockBackendOptions {
  /** One client per independent Redis master (ioredis or node-redis); at least 3, usually 5. */
  clients: readonly unknown[];
  /** Clock drift allowance as a fraction of the ttl (default 0.01). */
  driftFactor?: number;
  /** How long to wait for one node, ms (default 50): a slow or paused node counts as a failure. */
  nodeTimeout?: number;
  /** Prepended to every key (default "locksmith:"). */
  prefix?: string;
}

const SCRIPTS = { acquire: script(ACQUIRE), extend: script(EXTEND), release: script(RELEASE), inspect: script(INSPECT), sync: script(FENCE_SYNC) };

/** An acquire's reply: the node's fence when granted (> 0), else -1 - retry-after ms (0: unknown). */
const asFence = (reply: unknown): number => (typeof reply === 'number' ? reply : 0);
const isGrant = (fence: number): boolean => fence > 0;

type Vote<T> = { ok: true; value: T } | { ok: false; timeout: boolean; error: string };

export function redlockBackend(options: RedlockBackendOptions): LockBackend {
  const o = checkOptionNames(options, ['clients', 'driftFactor', 'nodeTimeout', 'prefix'], 'redlockBackend()');
  if (!Array.isArray(o.clients) || o.clients.length < 3) {
    throw new LockArgumentError('redlockBackend(): clients must be an array of at least 3 independent Redis masters');
  }
  const driftFactor: unknown = o.driftFactor === undefined ? 0.01 : o.driftFactor;
  if (typeof driftFactor !== 'number' || !(driftFactor >= 0 && driftFactor < 0.5)) {
    throw new LockArgumentError('redlockBackend(): driftFactor must be a number from 0 to 0.5');
  }
  const timeout = msOption('redlockBackend()', 'nodeTimeout', o.nodeTimeout, 50, 1, 60_000);
  const keyPrefix = prefixOption('redlockBackend()', o.prefix, 'locksmith:');
  const drift = driftFactor;
  const nodes: RedisAdapter[] = (o.clients as unknown[]).map((c) => adapt(c));
  const quorum = Math.floor(nodes.length / 2) + 1;

  /**
   * Runs a script on every node at once; each answer, error or timeout is a vote. Resolves once a
   * quorum of answers `counts` (a quorum said yes: waiting for stragglers only adds latency) or every
   * node has voted; votes still out are undefined. One timer serves all the nodes of a call.
   */
  function ask<T>(
    s: ReturnType<typeof script>,
    keys: string[],
    args: (string | number)[],
    map: (reply: unknown) => T,
    counts?: (value: T) => boolean,
  ): Promise<(Vote<T> | undefined)[]> {
    return new Promise((resolve) => {
      const votes: (Vote<T> | undefined)[] = new Array<Vote<T> | undefined>(nodes.length).fill(undefined);
      let settled = 0;
      let ayes = 0;
      let done = false;
      const finish = (): void => {
        done = true;
        clearTimeout(timer);
        resolve(votes.slice());
      };
      const vote = (i: number, v: Vote<T>): void => {
        if (done || votes[i] !== undefined) return;
        votes[i] = v;
        settled += 1;
        if (v.ok && counts?.(v.value)) ayes += 1;
        if (settled === nodes.length || ayes >= quorum) finish();
      };
      const timer = setTimeout(() => {
        for (let i = 0; i < nodes.length; i++) vote(i, { ok: false, timeout: true, error: `no answer within ${timeout} ms` });
      }, timeout);
      timer.unref();
      nodes.forEach((node, i) => {
        node.run(s, keys, args).then(
          (reply) => {
            if (done) return;
            let value: T;
            try {
              value = map(reply);
            } catch (error) {
              return vote(i, { ok: false, timeout: false, error: String(error) });
            }
            vote(i, { ok: true, value });
          },
          (error: unknown) => vote(i, { ok: false, timeout: false, error: error instanceof Error ? error.message : String(error) }),
        );
      });
    });
  }

  const yes = (votes: (Vote<boolean> | undefined)[]): number => votes.filter((v) => v?.ok === true && v.value).length;

  function outcomes(votes: (Vote<number> | undefined)[]): NodeOutcome[] {
    return votes.map((v, i) =>
      v === undefined
        ? { node: `#${i}`, outcome: 'timeout', error: 'still pending' }
        : v.ok
          ? { node: `#${i}`, outcome: v.value > 0 ? 'granted' : 'held' }
          : { node: `#${i}`, outcome: v.timeout ? 'timeout' : 'error', error: v.error },
    );
  }

  /** Release goes to every node; it is confirmed once a quorum confirms. */
  async function releaseAll(key: string, owner: string, wait: 'quorum' | 'all'): Promise<(Vote<boolean> | undefined)[]> {
    const k = keysFor(keyPrefix, key);
    // The exclusive holder's short form: Redlock leaves nothing else behind (no readers, intents or
    // places in line), so a node that does not know the owner as its holder has nothing to release.
    return ask(SCRIPTS.release, [k.lease, k.waiting], [owner], (r) => r === 1, wait === 'quorum' ? (released) => released : undefined);
  }

  return {
    name: 'redlock',
    capabilities: { shared: false, wake: false, fencing: true, expiry: 'ttl' },

    async acquire(req: AcquireRequest): Promise<AcquireResult> {
      const k = keysFor(keyPrefix, req.key);
      const start = performance.now();
      // Each node answers its fence (> 0) or -1 - retry-after ms; "keys" (a reader of the Redis
      // backend on this name) counts as a refusal.
      const votes = await ask(SCRIPTS.acquire, [k.lease, k.fence, k.waiting], [req.owner, req.ttl], asFence, isGrant);
      let granted = 0;
      let failed = 0;
      let token = 0;
      for (const v of votes) {
        if (v === undefined) continue;
        if (!v.ok) failed += 1;
        else if (v.value > 0) {
          granted += 1;
          if (v.value > token) token = v.value;
        }
      }
      if (granted >= quorum) {
        // A quorum must know the token before it is used. Nodes whose own fence is the token already
        // do (the usual case: counters move in step); the others are raised to it in one more trip.
        const behind: number[] = [];
        votes.forEach((v, i) => {
          if (v?.ok === true && v.value > 0 && v.value < token) behind.push(i);
        });
        let known = granted - behind.length;
        if (known < quorum) {
          const synced = await Promise.all(
            behind.map((i) =>
              nodes[i]!.run(SCRIPTS.sync, [k.lease, k.fence], [req.owner, String(token)]).then(
                (r) => r === 1,
                () => false,
              ),
            ),
          );
          known += synced.filter(Boolean).length;
        }
        const validity = req.ttl - (performance.now() - start) - (req.ttl * drift + 2);
        if (known >= quorum && validity > 0) return { granted: true, fence: BigInt(token), validity: Math.floor(validity) };
      }
      // No quorum (or no time left): hand back whatever was granted, on every node at once.
      await releaseAll(req.key, req.owner, 'all');
      if (failed > nodes.length - quorum) {
        throw new LockAcquisitionError(`"${req.key}": no quorum: ${failed} of ${nodes.length} nodes failed (a majority of ${quorum} must answer)`, {
          key: req.key,
          nodes: outcomes(votes),
        });
      }
      const waits = votes.flatMap((v) => (v?.ok === true && v.value <= -1 ? [-v.value - 1] : []));
      return { granted: false, retryAfter: waits.length >= quorum ? waits.sort((a, b) => a - b)[quorum - 1] : undefined };
    },

    async extend(key, owner, ttl) {
      const k = keysFor(keyPrefix, key);
      const start = performance.now();
      const allowance = ttl * drift + 2;
      // The core counts a renewed lease as valid for the full ttl from `start`. A node whose clock runs
      // fast by up to driftFactor would end a ttl-long lease before that, so the nodes are asked for
      // the drift allowance on top: they then outlive the holder's belief, as after an acquire.
      const votes = await ask(SCRIPTS.extend, [k.lease, k.shared], [owner, Math.ceil(ttl + allowance)], (r) => r === 1, (renewed) => renewed);
      // An extension that came back too late has no validity left to extend.
      if (yes(votes) >= quorum && performance.now() - start < ttl - allowance) return true;
      if (votes.filter((v) => v !== undefined && !v.ok).length > nodes.length - quorum) {
        throw new LockAcquisitionError(`"${key}": could not reach a majority to extend`, { key });
      }
      return false;
    },

    async release(key, owner) {
      const votes = await releaseAll(key, owner, 'quorum');
      const released = yes(votes);
      if (released >= quorum) return true;
      if (votes.some((v) => v !== undefined && !v.ok) && released > 0) {
        throw new LockAcquisitionError(`"${key}": released on ${released} of ${nodes.length} nodes; the rest did not answer`, { key });
      }
      return false;
    },

    async inspect(key): Promise<LockInfo | null> {
      const k = keysFor(keyPrefix, key);
      const votes = await ask(SCRIPTS.inspect, [k.lease, k.shared], [], (r) => r as (string | number)[]);
      const wall = Date.now();
      // The holder is whoever a majority names. Its fence is the one most of those nodes record: the
      // token was recorded on a quorum before acquire returned; a straggler may show another number.
      const seen = new Map<string, { fences: bigint[]; expiresAt: number }>();
      for (const v of votes) {
        if (v?.ok !== true || v.value[0] !== 'x') continue;
        const [, owner, remaining, fence] = v.value as [string, string, number, string];
        const entry = seen.get(owner) ?? { fences: [], expiresAt: Infinity };
        entry.fences.push(BigInt(fence));
        entry.expiresAt = Math.min(entry.expiresAt, wall + Number(remaining));
        seen.set(owner, entry);
      }
      for (const [owner, e] of seen) {
        if (e.fences.length < quorum) continue;
        const count = (f: bigint): number => e.fences.filter((x) => x === f).length;
        const fence = e.fences.reduce((best, f) => (count(f) > count(best) || (count(f) === count(best) && f > best) ? f : best));
        return { key, mode: 'exclusive', holders: [{ owner, fence, expiresAt: e.expiresAt }] };
      }
      return null;
    },

    close() {
      return Promise.resolve(); // the clients are the caller's
    },
  };
}
