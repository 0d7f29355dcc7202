// Shared holders' records: JSON after the header page, one [owner, fence, expiresAt, pid] entry per
// reader or permit holder, for inspect(). Owners are only ever Map keys and array items, never
// property names ('__proto__' is an owner like any other). Read and rewritten under META.

import { performance } from 'node:perf_hooks';
import { readSync, writeSync } from 'node:fs';
import { sleep } from '../../core/time.js';
import { LockAcquisitionError } from '../../errors.js';
import { EXCLUSIVE, META, UNLOCK } from './native.js';
import { diskFull, type Files, type LockFile } from './lockfile.js';
import type { Ranges } from './ranges.js';

/** Where shared holders' records start: after the header page. */
const RECORDS = 4096;

/** How long to keep trying for META before giving up: it is only held for a read and a write. */
const META_PATIENCE_MS = 2_000;

export interface Record {
  fence: bigint;
  expiresAt: number;
  pid: number;
}

export type Records = Map<string, Record>;

let scratch = Buffer.alloc(4096);

function parse(text: string): Records | undefined {
  try {
    const rows = JSON.parse(text) as unknown;
    if (!Array.isArray(rows)) return undefined;
    const records: Records = new Map();
    for (const row of rows as unknown[]) {
      if (!Array.isArray(row) || typeof row[0] !== 'string' || typeof row[1] !== 'string') return undefined;
      records.set(row[0], { fence: BigInt(row[1]), expiresAt: Number(row[2]), pid: Number(row[3]) });
    }
    return records;
  } catch {
    return undefined;
  }
}

/** Shared holders' records, or undefined when they do not parse (a write in progress, seen by inspect). */
function read(file: LockFile): Records | undefined {
  // Read until a short read instead of asking fstat for the size: one call fewer per acquisition.
  let size = 0;
  for (;;) {
    if (size === scratch.length) scratch = Buffer.concat([scratch, Buffer.alloc(scratch.length)]);
    const n = readSync(file.fd, scratch, size, scratch.length - size, RECORDS + size);
    size += n;
    if (n === 0 || size < scratch.length) break;
  }
  file.size = size;
  return size === 0 ? new Map() : parse(scratch.toString('utf8', 0, size));
}

/** Call only after read() under META, so the known size is current. */
export function write(file: LockFile, records: Records, key: string): void {
  // Overwrite in place, padding with spaces (valid trailing JSON whitespace) instead of truncating:
  // on ext4 a truncate-then-write makes close() flush the file (auto_da_alloc), ~10× the cost.
  const rows = [...records].map(([owner, r]) => [owner, r.fence.toString(), r.expiresAt, r.pid]);
  const text = Buffer.from(JSON.stringify(rows));
  const buf = text.length < file.size ? Buffer.concat([text, Buffer.alloc(file.size - text.length, 0x20)]) : text;
  try {
    writeSync(file.fd, buf, 0, buf.length, RECORDS);
  } catch (error) {
    throw diskFull(error, key);
  }
  file.size = buf.length;
}

/** Runs `fn` on the shared holders' records under META. */
export async function withMeta<T>(ranges: Ranges, key: string, file: LockFile, fn: (records: Records | undefined) => T): Promise<T> {
  const start = performance.now();
  while (!ranges.lock(file, EXCLUSIVE, META)) {
    if (performance.now() - start > META_PATIENCE_MS) {
      throw new LockAcquisitionError(
        `"${key}": the lock file's metadata stayed locked for ${META_PATIENCE_MS} ms (a holder paused mid-update?)`,
        { key },
      );
    }
    await sleep(1);
  }
  try {
    return fn(read(file));
  } finally {
    ranges.lock(file, UNLOCK, META);
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The last exclusive holder's record, when its process lives. */
export function holder(files: Files, file: LockFile): [owner: string, fence: bigint, expiresAt: number] | undefined {
  const r = files.locks.holder(file.header);
  return r && alive(r[3]) ? [r[0], r[1], r[2]] : undefined;
}

/** Shared records still live: not older than the last exclusive grant, and of a live process. */
export function live(files: Files, file: LockFile, records: Records | undefined): Records {
  const floor = files.locks.holder(file.header)?.[1] ?? 0n;
  const kept: Records = new Map();
  for (const [owner, r] of records ?? []) if (r.fence > floor && alive(r.pid)) kept.set(owner, r);
  return kept;
}
