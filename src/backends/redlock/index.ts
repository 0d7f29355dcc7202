// Redlock: one lock over N independent Redis masters, as specified by Redis. The same owner asks every
// node at once (with a short per-node timeout); the lock is held only if a majority granted it and
// some validity is left: ttl − elapsed (monotonic) − drift (ttl × driftFactor + 2 ms). Otherwise what
// was granted is released on every node at once. Fences: see scripts.ts. A release publishes on each
// node where someone was refused, and waiters listen on every node, so they are woken, not polling.

import { performance } from 'node:perf_hooks';
import type { AcquireRequest, AcquireResult, LockBackend, LockInfo } from '../../backend.js';
import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { Deadlines } from '../../core/deadlines.js';
import { checkOptionNames } from '../../options.js';
import { msOption, prefixOption } from '../shared/checks.js';
import { adapt, type RedisAdapter } from '../redis/client.js';
import { lockInfo } from '../redis/index.js';
import { keysFor, leaseKey, wakeChannel } from '../redis/keys.js';
import { leaseValue } from '../redis/lua.js';
import type { Grant } from '../redis/script.js';
import { EXTEND, INSPECT } from '../redis/scripts.js';
import { WakeChannel } from '../redis/wake.js';
import { distinctServers } from './distinct.js';
import { ask, failures, outcomes, quorumFreeIn, yes, type Cluster, type Votes } from './quorum.js';
import { ACQUIRE_PROPOSED, RELEASE_KEEP, SYNC } from './scripts.js';
import { plainBackend } from '../shared/plain.js';

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

/** How far above the nodes' clocks a proposed fence aims (µs): above their clocks by the time it arrives. */
const PROPOSAL_MARGIN_US = 2_000;
const isGrant = (g: Grant): boolean => g.granted === true;
const fenceOf = (g: Grant | undefined): bigint => (g?.granted === true ? g.fence : 0n);
/** When a node could grant, ms: now if it did, when its lease ends if it refused, unknown if readers hold it. */
const freeIn = (g: Grant): number | undefined => (g.granted === true ? 0 : g.granted === false ? g.retryAfter : undefined);
const nowUs = (): number => Math.floor(performance.now() * 1000);

export function redlockBackend(options: RedlockBackendOptions): LockBackend {
  return plainBackend(new RedlockBackend(options));
}

class RedlockBackend implements LockBackend {
  readonly name = 'redlock';
  readonly capabilities = { shared: false, wake: true, fencing: true, expiry: 'ttl' } as const;
  readonly #nodes: RedisAdapter[];
  readonly #quorum: number;
  readonly #timeout: number;
  readonly #cluster: Cluster;
  readonly #prefix: string;
  readonly #drift: number;
  readonly #checkDistinct: () => Promise<void> | undefined;
  readonly #wakes: WakeChannel;
  /**
   * How far the nodes' clocks (µs) are ahead of performance.now() here, learned from fences the nodes
   * chose themselves; undefined until one did. Proposals stay on the nodes' time scale, whatever the
   * local wall clock says.
   */
  #offset: number | undefined;

  constructor(options: RedlockBackendOptions) {
    const o = checkOptionNames(options, ['clients', 'driftFactor', 'nodeTimeout', 'prefix'], 'redlockBackend()');
    if (!Array.isArray(o.clients) || o.clients.length < 3) {
      throw new LockArgumentError('redlockBackend(): clients must be an array of at least 3 independent Redis masters');
    }
    const driftFactor: unknown = o.driftFactor === undefined ? 0.01 : o.driftFactor;
    if (typeof driftFactor !== 'number' || !(driftFactor >= 0 && driftFactor < 0.5)) {
      throw new LockArgumentError('redlockBackend(): driftFactor must be a number from 0 to 0.5');
    }
    this.#timeout = msOption('redlockBackend()', 'nodeTimeout', o.nodeTimeout, 50, 1, 60_000);
    this.#prefix = prefixOption('redlockBackend()', o.prefix, 'locksmith:');
    this.#drift = driftFactor;
    this.#nodes = (o.clients as unknown[]).map((c) => adapt(c));
    this.#quorum = Math.floor(this.#nodes.length / 2) + 1;
    this.#cluster = { nodes: this.#nodes, quorum: this.#quorum, timeout: this.#timeout, deadlines: new Deadlines() };
    this.#checkDistinct = distinctServers(this.#nodes, this.#quorum, this.#timeout);
    this.#wakes = new WakeChannel(this.#nodes, wakeChannel(this.#prefix));
  }

  /** The quorum's fence, recorded on a quorum of nodes before it is returned; null when that failed. */
  async #settleFence(lease: string, owner: string, votes: Votes<Grant>, proposed: bigint, sent: number): Promise<bigint | null> {
    let token = 0n;
    for (const v of votes) if (v?.ok === true && fenceOf(v.value) > token) token = fenceOf(v.value);
    const behind: number[] = [];
    votes.forEach((v, i) => {
      if (v?.ok !== true || v.value.granted !== true) return;
      // A node that chose its own fence tells how far ahead its clock is.
      if (v.value.fence !== proposed) this.#offset = Math.max(this.#offset ?? -Infinity, Number(v.value.fence) - sent);
      if (v.value.fence < token) behind.push(i);
    });
    const granted = votes.filter((v) => v?.ok === true && isGrant(v.value)).length;
    let known = granted - behind.length;
    if (known < this.#quorum) {
      // Within the node timeout, as every call: a node that paused after granting must not hang us.
      const synced = await ask({ ...this.#cluster, nodes: behind.map((i) => this.#nodes[i]!) }, SYNC, [lease], [owner, String(token)]);
      known += yes(synced);
    }
    return known >= this.#quorum ? token : null;
  }

  /** Release goes to every node; it is confirmed once a quorum confirms. `fence`: the lock's, when known. */
  #releaseAll(key: string, owner: string, fence: bigint | undefined, wait: 'quorum' | 'all'): Promise<Votes<boolean>> {
    const digits = fence === undefined ? undefined : String(fence);
    const args = digits === undefined ? [owner, '', ''] : [owner, leaseValue(owner, digits), `\n${digits}`];
    return ask(this.#cluster, RELEASE_KEEP, [leaseKey(this.#prefix, key)], args, wait === 'quorum' ? (released) => released : undefined);
  }

  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const checking = this.#checkDistinct();
    if (checking) await checking;
    const lease = leaseKey(this.#prefix, req.key);
    const start = performance.now();
    const sent = nowUs();
    const proposed = this.#offset === undefined ? 0n : BigInt(sent + Math.round(this.#offset) + PROPOSAL_MARGIN_US);
    const digits = String(proposed);
    // A node held by readers of a Redis backend on this name ("long") counts as a refusal.
    const votes = await ask(
      this.#cluster,
      ACQUIRE_PROPOSED,
      [lease],
      [req.owner, req.ttl, digits, proposed === 0n ? '' : leaseValue(req.owner, digits)],
      isGrant,
    );
    const granted = votes.filter((v) => v?.ok === true && isGrant(v.value)).length;
    if (granted >= this.#quorum) {
      const fence = await this.#settleFence(lease, req.owner, votes, proposed, sent);
      const validity = req.ttl - (performance.now() - start) - (req.ttl * this.#drift + 2);
      if (fence !== null && validity > 0) return { granted: true, fence, validity: Math.floor(validity) };
    }
    // No quorum (or no time left): hand back whatever was granted, on every node at once.
    await this.#releaseAll(req.key, req.owner, undefined, 'all');
    if (failures(votes) > this.#nodes.length - this.#quorum) {
      throw new LockAcquisitionError(
        `"${req.key}": no quorum: ${failures(votes)} of ${this.#nodes.length} nodes failed (a majority of ${this.#quorum} must answer)`,
        {
          key: req.key,
          nodes: outcomes(votes, isGrant),
        },
      );
    }
    return { granted: false, retryAfter: quorumFreeIn(votes, this.#quorum, freeIn) };
  }

  async extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const start = performance.now();
    const allowance = ttl * this.#drift + 2;
    // The core counts a renewed lease as valid for the full ttl from `start`. A node whose clock runs
    // fast by up to driftFactor would end a ttl-long lease before that, so the nodes are asked for
    // the drift allowance on top: they then outlive the holder's belief, as after an acquire.
    const votes = await ask(
      this.#cluster,
      EXTEND,
      [leaseKey(this.#prefix, key)],
      [owner, Math.ceil(ttl + allowance)],
      (renewed) => renewed,
    );
    // An extension that came back too late has no validity left to extend.
    if (yes(votes) >= this.#quorum && performance.now() - start < ttl - allowance) return true;
    if (failures(votes) > this.#nodes.length - this.#quorum)
      throw new LockAcquisitionError(`"${key}": could not reach a majority to extend`, { key });
    return false;
  }

  async release(key: string, owner: string, fence?: bigint): Promise<boolean> {
    const votes = await this.#releaseAll(key, owner, fence, 'quorum');
    const released = yes(votes);
    if (released >= this.#quorum) return true;
    if (failures(votes) > 0 && released > 0) {
      throw new LockAcquisitionError(`"${key}": released on ${released} of ${this.#nodes.length} nodes; the rest did not answer`, {
        key,
      });
    }
    return false;
  }

  async inspect(key: string): Promise<LockInfo | null> {
    const k = keysFor(this.#prefix, key);
    const votes = await ask(this.#cluster, INSPECT, [k.lease, k.shared], []);
    // The holder is whoever a majority names. Its fence is the one most of those nodes record: the
    // token was recorded on a quorum before acquire returned; a straggler may show another number.
    const seen = new Map<string, { fences: bigint[]; remaining: number }>();
    for (const v of votes) {
      const holder = v?.ok === true && v.value?.mode === 'exclusive' ? v.value.holders[0] : undefined;
      if (!holder) continue;
      const entry = seen.get(holder.owner) ?? { fences: [], remaining: Infinity };
      entry.fences.push(holder.fence);
      entry.remaining = Math.min(entry.remaining, holder.remaining);
      seen.set(holder.owner, entry);
    }
    for (const [owner, e] of seen) {
      if (e.fences.length < this.#quorum) continue;
      const count = (f: bigint): number => e.fences.filter((x) => x === f).length;
      const fence = e.fences.reduce((best, f) => (count(f) > count(best) || (count(f) === count(best) && f > best) ? f : best));
      return lockInfo(key, { mode: 'exclusive', holders: [{ owner, fence, remaining: e.remaining }] });
    }
    if (failures(votes) > this.#nodes.length - this.#quorum)
      throw new LockAcquisitionError(`"${key}": could not reach a majority to inspect`, { key, nodes: outcomes(votes, () => true) });
    return null;
  }

  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return this.#wakes.wait(leaseKey(this.#prefix, key), signal);
  }

  close(): Promise<void> {
    return this.#wakes.close(); // the clients are the caller's
  }
}
