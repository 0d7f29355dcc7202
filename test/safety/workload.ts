// The workload one client process runs: a few async tasks, each its own lock holder, each repeatedly
// taking the lock through the public API and doing a read-modify-write of the fenced counter under it.
//
// The tasks use the API three ways, so each path is exercised: withLock (auto-renewed), acquire +
// release without renewal, and acquire + release with renewal. A holder never consults lock.signal
// before writing: the point is that fencing alone protects the resource from a holder that was paused
// between checking and writing.

import { setTimeout as delay } from 'node:timers/promises';
import { LockAcquisitionError, LockError, type Lock, type Locksmith } from '../../src/index.js';
import { monoFromEpoch, type EntryInput, type HistoryWriter } from './history.js';
import { ResourceClient } from './resource.js';
import { Rng } from './rng.js';

export interface ClientConfig {
  /** The process's name in the history, e.g. `p2`; its tasks are `p2.t0`, `p2.t1`… */
  proc: string;
  tasks: number;
  key: string;
  /** The resource's loopback port. */
  port: number;
  ttl: number;
  /** How long one acquire may wait, ms. */
  wait: number;
  seed: number;
  /** A holder waits between its read and its write for up to this many ms, so overlaps would show. */
  holdMs: number;
}

type Style = 'withLock' | 'acquire' | 'acquire+renew';
const STYLES: readonly Style[] = ['withLock', 'acquire', 'acquire+renew'];

export function errorCode(error: unknown): string {
  if (error instanceof LockError) return error.code;
  if (error instanceof Error) return error.name === 'Error' ? error.message : error.name;
  return String(error);
}

/** The message and its chain of causes: the code says that an acquire failed, this says why. */
function errorMessage(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && depth < 4; depth++) {
    parts.push(e instanceof Error ? `${e.name}: ${e.message}` : JSON.stringify(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(' <- ');
}

/** A failure entry's fields: the code the checks look at, and the message for whoever reads the history. */
const failure = (error: unknown): { error: string; message: string } => ({ error: errorCode(error), message: errorMessage(error) });

/**
 * Runs the client's tasks until `signal` aborts; `onReady` fires once every task has its resource
 * connection. Connections go into `connections` so an emulated crash can cut them.
 */
export async function runClient(
  locks: Locksmith,
  config: ClientConfig,
  history: HistoryWriter,
  signal: AbortSignal,
  options: { onReady?: () => void; connections?: Set<ResourceClient> } = {},
): Promise<void> {
  const rng = new Rng(config.seed);
  const owners = new Map<string, { client: string; session: string }>();
  locks.on('extended', (e) => {
    const who = owners.get(e.owner);
    if (who) history.record({ op: 'extend', ...who, until: monoFromEpoch(e.expiresAt) });
  });
  const resources = await Promise.all(Array.from({ length: config.tasks }, () => ResourceClient.connect(config.port)));
  for (const r of resources) options.connections?.add(r);
  options.onReady?.();
  await Promise.all(
    resources.map((resource, i) =>
      task({
        locks,
        config,
        history,
        signal,
        resource,
        owners,
        client: `${config.proc}.t${i}`,
        style: STYLES[i % STYLES.length]!,
        rng: new Rng(rng.seed()),
      }),
    ),
  );
  for (const r of resources) r.close();
}

interface Task {
  locks: Locksmith;
  config: ClientConfig;
  history: HistoryWriter;
  signal: AbortSignal;
  resource: ResourceClient;
  owners: Map<string, { client: string; session: string }>;
  client: string;
  style: Style;
  rng: Rng;
}

async function task(t: Task): Promise<void> {
  for (let n = 1; !t.signal.aborted; n++) {
    let failed: boolean;
    try {
      failed = await session(t, `${t.client}#${n}`);
    } catch (error) {
      // Only the resource connection failing ends a task (the resource is closing, or this process's
      // emulated crash cut it); lock errors are recorded where they happen.
      if (t.signal.aborted) return;
      throw error;
    }
    // A little think time, so the same task does not always win the next round. A backend that
    // failed outright (down, no quorum) may fail again at once: back off as a real client would,
    // rather than spin on a machine that others share.
    await delay(failed ? t.rng.int(20, 50) : t.rng.int(0, 2));
  }
}

/** One acquisition and its critical section; true when the acquisition failed with a backend error. */
async function session(t: Task, session: string): Promise<boolean> {
  const { locks, config, history, client } = t;
  const record = (entry: EntryInput): void => history.record(entry);
  const options = { ttl: config.ttl, wait: config.wait, signal: t.signal };
  record({ op: 'acquire', phase: 'invoke', client, session });
  if (t.style === 'withLock') {
    let entered = false;
    try {
      await locks.withLock(
        config.key,
        async (lock) => {
          entered = true;
          held(t, lock, session);
          try {
            await critical(t, lock, session);
          } finally {
            record({ op: 'release', phase: 'invoke', client, session });
          }
        },
        options,
      );
      record({ op: 'release', phase: 'ok', client, session });
    } catch (error) {
      if (!entered) record({ op: 'acquire', phase: 'fail', client, session, ...failure(error) });
      else record({ op: 'release', phase: 'fail', client, session, ...failure(error) });
      if (error instanceof LockError || t.signal.aborted) return !entered && error instanceof LockAcquisitionError;
      throw error;
    } finally {
      forget(t, session);
    }
    return false;
  }
  let lock: Lock;
  try {
    lock = await locks.acquire(config.key, { ...options, autoRenew: t.style === 'acquire+renew' });
  } catch (error) {
    record({ op: 'acquire', phase: 'fail', client, session, ...failure(error) });
    return error instanceof LockAcquisitionError;
  }
  held(t, lock, session);
  try {
    await critical(t, lock, session);
  } finally {
    record({ op: 'release', phase: 'invoke', client, session });
    try {
      await lock.release();
      record({ op: 'release', phase: 'ok', client, session });
    } catch (error) {
      record({ op: 'release', phase: 'fail', client, session, ...failure(error) });
    }
    forget(t, session);
  }
  return false;
}

function held(t: Task, lock: Lock, session: string): void {
  const { client, history } = t;
  t.owners.set(lock.owner, { client, session });
  history.record({ op: 'acquire', phase: 'ok', client, session, fence: lock.fence.toString(), until: monoFromEpoch(lock.expiresAt) });
  lock.signal.addEventListener('abort', () => history.record({ op: 'lost', client, session, ...failure(lock.signal.reason) }), {
    once: true,
  });
}

function forget(t: Task, session: string): void {
  for (const [owner, who] of t.owners) if (who.session === session) t.owners.delete(owner);
}

/** Read, think, write value + 1: the update a broken lock would lose. */
async function critical(t: Task, lock: Lock, session: string): Promise<void> {
  const { client, history, resource, config } = t;
  const base = { proc: config.proc, client, session, fence: lock.fence.toString() };
  history.record({ op: 'read', phase: 'invoke', client, session });
  const read = await resource.request({ ...base, action: 'read' });
  history.record({ op: 'read', phase: 'ok', client, session, value: read.value, accepted: read.accepted });
  if (!read.accepted) return;
  const hold = t.rng.int(0, config.holdMs);
  if (hold > 0) await delay(hold);
  const value = read.value + 1;
  history.record({ op: 'write', phase: 'invoke', client, session, value });
  const wrote = await resource.request({ ...base, action: 'write', value });
  history.record({ op: 'write', phase: 'ok', client, session, value, accepted: wrote.accepted });
}
