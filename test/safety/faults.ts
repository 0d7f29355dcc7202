// Faults the harness injects, each a FaultKind in one registry. A kind says which systems it applies
// to and injects itself once, recording when it started and when it healed (liveness is measured from
// the heal). Kinds that act on infrastructure reach it through SystemUnderTest.nodes / .proxies, and
// their supports() asks for the nodes or proxies they need: a Redis server killed (-9) and restarted
// with or without its data, a stopped server, a holder cut off from it or a slow link (proxies), and
// for Redlock a minority or a majority of its nodes lost, or one node stopped.
//
// Every fault strikes at the one moment that matters: the resource has just accepted a holder's read,
// and the holder is about to write. Its reply waits as the fault says (the holder is slow to write).

import { setTimeout as delay } from 'node:timers/promises';
import type { EntryInput } from './history.js';
import { Registry } from './registry.js';
import type { FencedCounter, ResourceRequest } from './resource.js';
import type { Rng } from './rng.js';
import type { ClientHandle, ServerNode, SystemUnderTest } from './systems.js';

export interface FaultContext {
  readonly system: SystemUnderTest;
  readonly resource: FencedCounter;
  readonly ttl: number;
  readonly random: Rng;
  /** The clients now (crashed ones are replaced). */
  clients(): readonly ClientHandle[];
  /** Starts a fresh client in place of a crashed one, so the load stays the same. */
  replace(crashed: ClientHandle): Promise<void>;
  /** Appends to the harness's history. */
  record(entry: EntryInput): void;
}

export interface FaultOutcome {
  injected: boolean;
  detail: string;
}

export interface FaultKind {
  readonly name: string;
  readonly summary: string;
  supports(system: SystemUnderTest): boolean;
  /** ms within which some acquisition must complete after the heal (default: livenessBound(ttl)). */
  bound?(ttl: number): number;
  /** Injects the fault once and resolves when it has healed. */
  inject(context: FaultContext): Promise<FaultOutcome>;
}

const kinds = new Registry<FaultKind>('fault');
export const registerFault = (kind: FaultKind): void => kinds.add(kind);
export const faultKind = (name: string): FaultKind => kinds.get(name);
export const faultNames = (): string[] => kinds.names();

/** How long a client fault waits for a holder to read before giving up on this round. */
const STRIKE_WITHIN_MS = 10_000;

/**
 * Runs `act` on the client whose read the resource accepts next (it holds the lock and is about to
 * write); its reply waits until `act` is done. Resolves with what `act` returned, or undefined when no
 * holder read within STRIKE_WITHIN_MS.
 */
function atHolderRead<T>(
  context: FaultContext,
  act: (client: ClientHandle, request: ResourceRequest) => Promise<T>,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    let fired = false;
    const timer = setTimeout(() => {
      remove();
      resolve(undefined);
    }, STRIKE_WITHIN_MS);
    const remove = context.resource.addHook(async (request, reply) => {
      if (fired || request.action !== 'read' || !reply.accepted) return;
      const client = context.clients().find((c) => c.proc === request.proc && c.state === 'running');
      if (!client) return;
      fired = true;
      clearTimeout(timer);
      remove();
      try {
        resolve(await act(client, request));
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  });
}

/** The GC-pause case: stop a holder between its read and its write for longer than its ttl. */
registerFault({
  name: 'pause-holder',
  summary: 'a holder is paused (SIGSTOP) between read and write for longer than its ttl, then resumed',
  supports: () => true,
  async inject(context) {
    const outcome = await atHolderRead(context, async (client, request) => {
      const fence = BigInt(request.fence);
      context.record({
        op: 'fault',
        phase: 'start',
        fault: 'pause-holder',
        target: client.proc,
        detail: `${request.session} fence ${request.fence}`,
      });
      const started = performance.now();
      client.pause();
      // Until a newer holder has been let in (the resource saw a higher fence), so the paused write is
      // sure to be stale; a backend whose lease outlives a stopped holder never lets one in.
      const overtaken = await context.resource.until(() => context.resource.highest > fence, 2 * context.ttl);
      // At least past the ttl, whatever happened: that is the fault.
      const past = context.ttl + 100 - (performance.now() - started);
      if (past > 0) await delay(past);
      const paused = Math.round(performance.now() - started);
      const detail = `${client.proc} paused ${paused} ms; ${overtaken ? 'a newer holder got in' : 'nobody else got in'}`;
      // Recorded before SIGCONT: the resumed process may act before this event loop turns again.
      context.record({ op: 'fault', phase: 'heal', fault: 'pause-holder', target: client.proc, detail });
      client.resume();
      return detail;
    });
    return outcome === undefined ? { injected: false, detail: 'no holder read in time' } : { injected: true, detail: outcome };
  },
});

/** A holder dies without releasing; the others must carry on. */
registerFault({
  name: 'kill-holder',
  summary: 'a holder is killed (SIGKILL) between read and write, and replaced by a fresh process',
  supports: () => true,
  async inject(context) {
    const crashed = await atHolderRead(context, async (client, request) => {
      context.record({
        op: 'fault',
        phase: 'start',
        fault: 'kill-holder',
        target: client.proc,
        detail: `${request.session} fence ${request.fence}`,
      });
      // Recorded before SIGKILL: others may get the lock before we hear of the exit, and a dead
      // process's belief must not last until then. An op of its still in flight widens its hold.
      context.record({ op: 'crash', target: client.proc });
      context.record({ op: 'fault', phase: 'heal', fault: 'kill-holder', target: client.proc });
      await client.kill();
      return client;
    });
    if (!crashed) return { injected: false, detail: 'no holder read in time' };
    await context.replace(crashed);
    return { injected: true, detail: `${crashed.proc} killed and replaced` };
  },
});

// ---- infrastructure faults ---------------------------------------------------------------------

/** When the struck holder gets the reply to its read (and so goes on to write). */
type ReplyAt = 'now' | 'heal' | 'successor';

interface Outage {
  /** What is hit, for the history: a node, several, or a client's link. */
  target: string;
  begin(): Promise<void> | void;
  /** How long the outage lasts, ms; 'successor': until a newer holder got in (and at least past the ttl). */
  lasts: number | 'successor';
  heal(): Promise<void> | void;
  reply: ReplyAt;
}

/**
 * Runs an outage around a holder's read: it begins, lasts, heals, and the holder's reply is let go
 * at the planned point. 'successor' means: once the resource has seen a higher fence than the
 * holder's, so the holder's write is sure to be stale and must be fenced off.
 */
async function strike(context: FaultContext, fault: string, plan: (client: ClientHandle) => Outage | undefined): Promise<FaultOutcome> {
  let done: Promise<string> | undefined;
  const struck = await atHolderRead(context, (client, request) => {
    const outage = plan(client);
    if (!outage) return Promise.resolve(false);
    const fence = BigInt(request.fence);
    const successor = (): Promise<boolean> => context.resource.until(() => context.resource.highest > fence, 2 * context.ttl);
    let released!: () => void;
    const reply = new Promise<void>((resolve) => (released = resolve));
    done = (async () => {
      const started = performance.now();
      context.record({
        op: 'fault',
        phase: 'start',
        fault,
        target: outage.target,
        struck: request.session,
        detail: `${request.session} holds fence ${request.fence}`,
      });
      try {
        await outage.begin();
        if (outage.reply === 'now') released();
        let overtaken: boolean | undefined;
        if (outage.lasts === 'successor') {
          overtaken = await successor();
          const past = context.ttl + 100 - (performance.now() - started);
          if (past > 0) await delay(past);
        } else await delay(outage.lasts);
        const lasted = Math.round(performance.now() - started);
        // Recorded before healing: a healed server or link may serve someone before we look again.
        context.record({ op: 'fault', phase: 'heal', fault, target: outage.target, detail: `after ${lasted} ms` });
        await outage.heal();
        if (outage.reply === 'successor') overtaken = await successor();
        const who = overtaken === undefined ? '' : overtaken ? '; a newer holder got in' : '; nobody else got in';
        return `${outage.target} for ${lasted} ms, ${request.session} ${outage.reply === 'now' ? 'went on at once' : `waited for the ${outage.reply}`}${who}`;
      } finally {
        released();
      }
    })();
    // Awaited below, once the strike resolves; until then a failed heal must not count as unhandled.
    done.catch(() => undefined);
    // The holder's reply waits for this, not for the whole fault.
    return reply.then(() => true);
  });
  if (!struck || !done) return { injected: false, detail: 'no holder read in time' };
  return { injected: true, detail: await done };
}

const names = (nodes: readonly ServerNode[]): string => nodes.map((n) => n.name).join('+');

/** A few distinct nodes, drawn from the schedule's generator. */
function pick(context: FaultContext, count: number): ServerNode[] {
  const pool = [...context.system.nodes];
  const out: ServerNode[] = [];
  while (out.length < count && pool.length > 0) out.push(...pool.splice(context.random.int(0, pool.length - 1), 1));
  return out;
}

/** Longer than a lease, so every lease the outage touches runs out during it. */
const pastTtl = (context: FaultContext): number => context.ttl + context.random.int(100, 300);

function killRestart(context: FaultContext, nodes: ServerNode[], keepData: boolean, downFor: number, reply: ReplyAt): Outage {
  return {
    target: names(nodes),
    begin: () => Promise.all(nodes.map((n) => n.kill())).then(() => undefined),
    lasts: downFor,
    heal: () => Promise.all(nodes.map((n) => n.restart({ keepData }))).then(() => undefined),
    reply,
  };
}

function stopped(nodes: ServerNode[], lasts: number): Outage {
  return {
    target: names(nodes),
    // Some servers pause in steps (PostgreSQL: every process of the cluster), so each is awaited.
    begin: () => Promise.all(nodes.map(async (n) => n.pause())).then(() => undefined),
    lasts,
    heal: () => Promise.all(nodes.map(async (n) => n.resume())).then(() => undefined),
    reply: 'now',
  };
}

const single = (system: SystemUnderTest): boolean => system.nodes.length === 1;
const quorum = (system: SystemUnderTest): boolean => system.nodes.length >= 3;

/** The lease and the fence counter must survive kill -9 on a server that persists every write. */
registerFault({
  name: 'server-restart',
  summary: 'the server is killed (SIGKILL) while a client holds the lock and restarted with its data (append-only file, fsync always)',
  supports: single,
  inject: (context) =>
    strike(context, 'server-restart', () => killRestart(context, pick(context, 1), true, context.random.int(50, 200), 'heal')),
});

/**
 * A server that comes back empty has forgotten every lease: another client may get the lock while
 * the struck holder still believes it holds it. Its counter is gone too, so the next fence comes from
 * the server clock; the held-back write of the old holder must then be fenced off.
 */
registerFault({
  name: 'server-restart-empty',
  summary: 'the server is killed (SIGKILL) while a client holds the lock and restarted without its data',
  supports: single,
  inject: (context) =>
    strike(context, 'server-restart-empty', () => killRestart(context, pick(context, 1), false, context.random.int(50, 200), 'successor')),
});

registerFault({
  name: 'server-pause',
  summary: 'the server is stopped (SIGSTOP) for longer than the ttl while a client holds the lock, then resumed',
  supports: single,
  inject: (context) => strike(context, 'server-pause', () => stopped(pick(context, 1), pastTtl(context))),
});

/** The holder alone loses its link to the server; the others carry on and one of them takes over. */
registerFault({
  name: 'partition-holder',
  summary: "a holder's link to the server is black-holed (TCP proxy) until its lease has passed to another client, then heals",
  supports: (system) => system.proxyFor !== undefined,
  inject: (context) =>
    strike(context, 'partition-holder', (client) => {
      const proxy = context.system.proxyFor?.(client.proc);
      if (!proxy) return undefined;
      return {
        target: proxy.name,
        begin: () => proxy.set({ kind: 'blackhole' }),
        lasts: 'successor',
        heal: () => proxy.set({ kind: 'pass' }),
        reply: 'heal',
      };
    }),
});

/** Systems whose clients reach the server through proxies (their own, or shared ones already up). */
const hasLinks = (system: SystemUnderTest): boolean => system.proxyFor !== undefined || system.proxies.length > 0;

/**
 * Every link slows down (both ways), for two leases' time; acquisitions and renewals must still work,
 * and a lease's validity must be counted from when its request left, not from when the grant came back.
 * The round trip (ttl/4) stays within the Redis system's commandTimeout (ttl/2).
 */
registerFault({
  name: 'slow-network',
  summary: 'every link to the server gets a delay of ttl/8 each way for two ttls (TCP proxies), then heals',
  supports: hasLinks,
  inject: (context) =>
    strike(context, 'slow-network', () => ({
      target: 'all links',
      begin: () => context.system.proxies.forEach((p) => p.set({ kind: 'delay', ms: Math.round(context.ttl / 8) })),
      lasts: 2 * context.ttl,
      heal: () => context.system.proxies.forEach((p) => p.set({ kind: 'pass' })),
      reply: 'now',
    })),
});

/**
 * An operator (or a failover, or a connection limit) ends the holder's session: the server frees
 * its locks at once, the holder learns it from its connection, and its held-back write must then be
 * fenced off by the next holder's.
 */
registerFault({
  name: 'terminate-holder',
  summary: "the holder's session is ended on the server (pg_terminate_backend) between its read and its write",
  supports: (system) => system.nodes.some((n) => n.endSessions !== undefined),
  inject: (context) =>
    strike(context, 'terminate-holder', () => {
      const node = context.system.nodes.find((n) => n.endSessions !== undefined);
      if (!node) return undefined;
      return {
        target: node.name,
        begin: async () => void (await node.endSessions!()),
        lasts: 0,
        heal: () => undefined,
        reply: 'successor',
      };
    }),
});

/**
 * Every client's connection is reset at once (a proxy restart, a NAT table flushed, a failover of
 * the network path): clients must reconnect and carry on. Leases kept by the server survive it;
 * leases that live with a connection do not.
 */
registerFault({
  name: 'reset-links',
  summary: "every client's connection to the server is reset (TCP RST, through the proxies) while a client holds the lock",
  supports: hasLinks,
  inject: (context) =>
    strike(context, 'reset-links', () => ({
      target: 'all links',
      begin: () => context.system.proxies.forEach((p) => p.set({ kind: 'drop' })),
      lasts: 0,
      heal: () => undefined,
      reply: 'now',
    })),
});

/** A minority down: a majority still answers, so the lock keeps working; the lost nodes come back with their data. */
registerFault({
  name: 'minority-loss',
  summary: 'a minority of the nodes (2 of 5) is killed (SIGKILL) for longer than the ttl, then restarted with its data',
  supports: quorum,
  inject: (context) =>
    strike(context, 'minority-loss', () =>
      killRestart(
        context,
        pick(context, Math.floor((context.system.nodes.length - 1) / 2)),
        true,
        pastTtl(context) + (context.system.failoverMs ?? 0),
        'now',
      ),
    ),
});

/** A majority down: nobody may get the lock, and acquisitions must fail with a clear error until it is back. */
registerFault({
  name: 'majority-loss',
  summary: 'a majority of the nodes (3 of 5) is killed (SIGKILL) for longer than the ttl, then restarted with its data',
  supports: quorum,
  inject: (context) =>
    strike(context, 'majority-loss', () =>
      killRestart(context, pick(context, Math.floor(context.system.nodes.length / 2) + 1), true, pastTtl(context), 'now'),
    ),
});

/**
 * One node forgets everything (no persistence) while a lease is held on it: the quorum that granted
 * still has a majority that remembers, and fences go on rising from the nodes' clocks and the kept
 * fences of the others.
 */
registerFault({
  name: 'node-restart-empty',
  summary: 'one node is killed (SIGKILL) while a client holds the lock and restarted at once without its data',
  supports: (system) => quorum(system) && system.restartsEmpty !== false,
  inject: (context) =>
    strike(context, 'node-restart-empty', () => killRestart(context, pick(context, 1), false, context.random.int(50, 200), 'now')),
});

registerFault({
  name: 'node-pause',
  summary: 'one node is stopped (SIGSTOP) for longer than the ttl, then resumed',
  supports: quorum,
  inject: (context) => strike(context, 'node-pause', () => stopped(pick(context, 1), pastTtl(context))),
});
