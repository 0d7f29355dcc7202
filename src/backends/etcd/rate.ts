// Rate-limiter buckets on etcd: one key per bucket ("<prefix>%rate/<escaped name>", never a lock
// name's key: an escaped name cannot start with "%r") holding its TAT (gcra.ts) as decimal epoch ms,
// changed only by compare-and-swap on the key's mod revision.
//
// The clock is this client's: etcd has none to offer (its leases count seconds on the leader and
// cannot be read back finer). Clients whose clocks disagree by d admit at most d × rate more than
// the bucket allows; docs/backends/etcd.md says so.
//
// One round trip a take: the instance keeps the last value it saw of a bucket with its mod revision,
// computes the decision from it and sends IF mod revision unchanged THEN put (or, for a refusal or a
// peek, nothing) ELSE read. The compare makes a refusal as sure as a grant. Only a race lost to
// another process costs another trip, computed from what the failure branch read. Takes of one bucket
// in one instance run one after another, so they never race each other.
//
// Nothing is left behind: a bucket's key is put on a lease that ends once its TAT has passed (the
// bucket is full again, which is what an absent key means). Leases are shared by every bucket whose
// TAT falls in the same 2 s window: granted once per window by this instance, never kept alive,
// never revoked, they just run out.

import { LockAcquisitionError } from '../../errors.js';
import { gcra, type RateDecision, type RateRequest, type RateStore } from '../shared/gcra.js';
import type { CallOptions, EtcdClient, KeyValue } from './client.js';
import { CMP, TARGET, escapeName } from './keys.js';
import { PerKey } from '../shared/serial.js';

/** Races lost in a row to other processes' takes before a take gives up. */
const RACES = 50;
/** Width of a lease window, ms: one lease grant per window a bucket's TAT moves into. */
const WINDOW_MS = 2_000;
/** Buckets whose last value is remembered; a forgotten one costs one lost race to learn again. */
const REMEMBERED = 10_000;

interface Seen {
  tat: number | undefined;
  /** The key's mod revision when it held `tat` ("0": absent). */
  revision: string;
}

const ABSENT: Seen = { tat: undefined, revision: '0' };

export class EtcdRates implements RateStore {
  readonly #seen = new Map<string, Seen>();
  /** This instance's takes, one at a time per bucket. */
  readonly #takes = new PerKey();
  /** Lease ids by the end of their window (epoch ms). */
  readonly #leases = new Map<number, Promise<string>>();

  constructor(
    private readonly client: EtcdClient,
    private readonly root: Buffer,
    private readonly call: () => CallOptions,
  ) {}

  take(request: RateRequest): Promise<RateDecision> {
    return this.#takes.run(request.key, () => this.#take(request));
  }

  async reset(key: string): Promise<void> {
    this.#seen.delete(key);
    await this.client.kv.txn({ compare: [], success: [{ request_delete_range: { key: this.#key(key) } }], failure: [] }, this.call());
  }

  close(): void {
    this.#seen.clear();
    this.#leases.clear();
  }

  async #take(r: RateRequest): Promise<RateDecision> {
    const key = this.#key(r.key);
    for (let race = 0; race < RACES; race++) {
      const seen = this.#seen.get(r.key) ?? ABSENT;
      const step = gcra(seen.tat, Date.now(), r);
      const write =
        step.tat === undefined ? [] : [{ request_put: { key, value: Buffer.from(String(step.tat)), lease: await this.#lease(step.tat) } }];
      const answer = await this.client.kv.txn(
        {
          compare: [{ key, target: TARGET.MOD, result: CMP.EQUAL, mod_revision: seen.revision }],
          success: write,
          failure: [{ request_range: { key } }],
        },
        this.call(),
      );
      if (answer.succeeded) {
        // A transaction that wrote leaves the key at the store revision it answers with.
        if (step.tat !== undefined) this.#remember(r.key, { tat: step.tat, revision: answer.header.revision });
        return step.decision;
      }
      this.#remember(r.key, this.#parse(r.key, answer.responses[0]?.response_range?.kvs[0]));
    }
    throw new LockAcquisitionError(`rate limiter "${r.key}": ${RACES} takes by other processes came first, one after another`, {
      key: r.key,
    });
  }

  /** A lease that runs out at the end of the window `tat` falls in, or later (never before `tat`). */
  #lease(tat: number): Promise<string> {
    const end = (Math.floor(tat / WINDOW_MS) + 1) * WINDOW_MS;
    let lease = this.#leases.get(end);
    if (!lease) {
      const now = Date.now();
      for (const past of this.#leases.keys()) if (past <= now) this.#leases.delete(past);
      // One second more than the window needs: etcd counts whole seconds, from when it grants.
      const ttl = Math.ceil((end - now) / 1000) + 1;
      lease = this.client.leaseClient.leaseGrant({ TTL: ttl }, this.call()).then((granted) => {
        if (granted.error) throw new Error(`etcd refused a lease: ${granted.error}`);
        return granted.ID;
      });
      void lease.catch(() => this.#leases.get(end) === lease && this.#leases.delete(end));
      this.#leases.set(end, lease);
    }
    return lease;
  }

  #remember(name: string, seen: Seen): void {
    this.#seen.delete(name);
    this.#seen.set(name, seen);
    if (this.#seen.size > REMEMBERED) this.#seen.delete(this.#seen.keys().next().value!);
  }

  #parse(name: string, kv: KeyValue | undefined): Seen {
    if (!kv) return ABSENT;
    const tat = Number(kv.value?.toString('utf8'));
    if (!Number.isFinite(tat)) throw new LockAcquisitionError(`rate limiter "${name}": its etcd key does not hold a time`, { key: name });
    return { tat, revision: kv.mod_revision };
  }

  #key(name: string): Buffer {
    return Buffer.concat([this.root, Buffer.from(`%rate/${escapeName(name)}`, 'utf8')]);
  }
}
