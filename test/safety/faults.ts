// Faults the harness injects, each a FaultKind in one registry. A kind says which systems it applies
// to and injects itself once, recording when it started and when it healed (liveness is measured from
// the heal). Kinds that act on infrastructure reach it through SystemUnderTest.nodes / .proxies, so
// e.g. a Redis node kill -9 + restart (with or without its append-only file), SIGSTOP of a node, a
// proxy that drops, blackholes or delays, pg_terminate_backend, or Redlock minority / majority loss
// is one more registerFault() whose supports() asks for the nodes it needs.
//
// The client faults below strike at the one moment that matters: the resource has just accepted a
// holder's read, and the holder is about to write.

import { setTimeout as delay } from 'node:timers/promises';
import type { EntryInput } from './history.js';
import { Registry } from './registry.js';
import type { FencedCounter, ResourceRequest } from './resource.js';
import type { Rng } from './rng.js';
import type { ClientHandle, SystemUnderTest } from './systems.js';

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
function atHolderRead<T>(context: FaultContext, act: (client: ClientHandle, request: ResourceRequest) => Promise<T>): Promise<T | undefined> {
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
      context.record({ op: 'fault', phase: 'start', fault: 'pause-holder', target: client.proc, detail: `${request.session} fence ${request.fence}` });
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
      context.record({ op: 'fault', phase: 'start', fault: 'kill-holder', target: client.proc, detail: `${request.session} fence ${request.fence}` });
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
