// The history format shared by the workload, the resource, the harness and the checker, and the one
// clock they all stamp it with.
//
// The clock is CLOCK_MONOTONIC, read through process.hrtime: on Linux it is one clock for the whole
// machine (time since boot, never stepped by NTP), so entries written by different processes compare
// directly. Microseconds keep every value an exact integer in a double.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';

/** Microseconds on CLOCK_MONOTONIC, comparable across every process on this machine. */
export function now(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * Converts the library's `expiresAt` (epoch ms, floored) to the monotonic clock. The epoch side is
 * read as timeOrigin + performance.now() rather than Date.now(), whose whole-ms steps would add error.
 */
export function monoFromEpoch(epochMs: number): number | null {
  if (!Number.isFinite(epochMs)) return null;
  return now() + Math.round((epochMs - (performance.timeOrigin + performance.now())) * 1000);
}

export type Phase = 'invoke' | 'ok' | 'fail';

interface Base {
  /** µs, CLOCK_MONOTONIC (see now()). */
  t: number;
  /** The OS process (or, for the memory backend, the emulated one) that wrote the entry. */
  proc: string;
}

/** A client task's view: one lock holder (its own owner id) doing sessions one after another. */
interface ClientBase extends Base {
  client: string;
  /** One acquisition and what was done under it: `${client}#${n}`. */
  session: string;
}

export type Entry =
  | (ClientBase & { op: 'acquire'; phase: 'invoke' })
  /** `until`: when the lease's validity ends as the client knows it (µs); null = no ttl. */
  | (ClientBase & { op: 'acquire'; phase: 'ok'; fence: string; until: number | null })
  /** `error`: the code (or name); `message`: the message with its causes, to tell why it failed. */
  | (ClientBase & { op: 'acquire'; phase: 'fail'; error: string; message?: string })
  /** A renewal landed: the client now believes it holds the lease until `until`. */
  | (ClientBase & { op: 'extend'; until: number | null })
  /** The library signalled the lease lost (lock.signal aborted). */
  | (ClientBase & { op: 'lost'; error: string; message?: string })
  | (ClientBase & { op: 'read' | 'write' | 'release'; phase: 'invoke'; value?: number })
  | (ClientBase & { op: 'read' | 'write' | 'release'; phase: 'ok'; value?: number; accepted?: boolean })
  | (ClientBase & { op: 'read' | 'write' | 'release'; phase: 'fail'; error: string; message?: string })
  /** The resource's decision, at the moment it took it: the authority on what was accepted. */
  | (ClientBase & { op: 'serve'; action: 'read' | 'write'; fence: string; accepted: boolean; value: number; seq: number })
  /** A fault began (`start`) or healed (`heal`); liveness is measured from each heal. `struck`: the session it struck. */
  | (Base & { op: 'fault'; phase: 'start' | 'heal'; fault: string; target: string; detail?: string; struck?: string })
  /** `target` (an OS process or emulated one) stopped existing: its leases are no longer believed held. */
  | (Base & { op: 'crash'; target: string })
  /** The resource's value at the end of the run. */
  | (Base & { op: 'final'; value: number })
  | (Base & { op: 'meta'; meta: RunMeta });

export interface RunMeta {
  backend: string;
  fault: string;
  seed: number;
  ttl: number;
  /** Liveness: after a fault heals, some acquisition completes within this many ms. */
  boundMs: number;
  /** The resource's value before the run. */
  initial: number;
  note?: string;
}

export type EntryInput = Entry extends infer E ? (E extends Entry ? Omit<E, 't' | 'proc'> : never) : never;

/** Appends entries as JSON lines with one write(2) each, so a SIGKILL loses at most the entry in flight. */
export class HistoryWriter {
  readonly path: string;
  readonly proc: string;
  #fd: number | undefined;

  constructor(path: string, proc: string) {
    this.path = path;
    this.proc = proc;
    this.#fd = openSync(path, 'a');
  }

  record(entry: EntryInput): void {
    if (this.#fd === undefined) return;
    writeSync(this.#fd, `${JSON.stringify({ t: now(), proc: this.proc, ...entry })}\n`);
  }

  /** A crashed (emulated) process writes nothing more. */
  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}

export function parseHistory(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const line of text.split('\n')) {
    // A process killed mid-write can leave a torn last line; it carries no decision anyone relied on.
    if (line.trim() === '') continue;
    try {
      entries.push(JSON.parse(line) as Entry);
    } catch {
      continue;
    }
  }
  return entries;
}

/** Every file's entries in one history, in time order (ties keep file order). */
export function mergeHistories(paths: readonly string[]): Entry[] {
  const all = paths.flatMap((p) => parseHistory(readFileSync(p, 'utf8')));
  return sortByTime(all);
}

export function sortByTime(entries: readonly Entry[]): Entry[] {
  return entries
    .map((e, i) => [e, i] as const)
    .sort((a, b) => a[0].t - b[0].t || a[1] - b[1])
    .map(([e]) => e);
}

export function toJsonLines(entries: readonly Entry[]): string {
  return entries.map((e) => JSON.stringify(e)).join('\n') + '\n';
}
