// Case A on one CPU: this process and the server processes serving its connections share one CPU
// while A runs, and are given every CPU back for B and C.
//
// Why: a sequential acquire+release is a chain of wake-ups between two processes. On the 2-core VMs
// these benchmarks run on, a wake-up that crosses CPUs costs several times one that does not (a raw
// PostgreSQL pair took 47 µs with both processes on one CPU and 180–380 µs across two), and the
// scheduler decides per connection, for a while, which it gets. Unpinned, the same statement on two
// connections measured 0.60× and 1.66× each other in two runs of the same build: A measured where
// the kernel put the processes, not the contenders. On one CPU every contender pays the same
// wake-up, and A compares the work each does, client and server.
//
// It needs `taskset` (util-linux) and the right to set the server processes' affinity (root, or the
// server's user); without either, A runs unpinned and the table says so. BENCH_PIN=0 turns it off
// where a bench pins by default (PostgreSQL), BENCH_PIN=1 on where it does not (Redis).

import { execFile } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Pinning {
  /** Whether A ran pinned (false when taskset or the right to use it is missing, or BENCH_PIN=0). */
  readonly pinned: boolean;
  /** Pins this process and the server processes `pids()` names that it has not pinned yet (called before each A round: new connections come). */
  pin(): Promise<void>;
  /** Gives every pinned process all CPUs back. */
  unpin(): Promise<void>;
}

async function affinity(pid: number, cpus: string): Promise<boolean> {
  try {
    await run('taskset', ['-a', '-p', '-c', cpus, String(pid)]);
    return true;
  } catch {
    return false;
  }
}

/** Whether `pid` still runs (a connection's server process may have ended since it was listed). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pinning of this process and of the servers `pids()` lists (their processes, one per connection for PostgreSQL); `byDefault` when BENCH_PIN is unset. */
export async function oneCpu(pids: () => Promise<number[]>, byDefault: boolean): Promise<Pinning> {
  const all = `0-${availableParallelism() - 1}`;
  const touched = new Set<number>([process.pid]);
  const wanted = process.env.BENCH_PIN === undefined || process.env.BENCH_PIN === '' ? byDefault : process.env.BENCH_PIN !== '0';
  let pinned = wanted && availableParallelism() > 1 && (await affinity(process.pid, all));
  const unpin = async (): Promise<void> => {
    for (const pid of touched) await affinity(pid, all);
  };
  return {
    get pinned() {
      return pinned;
    },
    async pin() {
      if (!pinned) return;
      for (const pid of [process.pid, ...(await pids())]) {
        if (touched.has(pid) && pid !== process.pid) continue;
        touched.add(pid);
        // A server process we may not pin leaves A unpinned: say so rather than measure half pinned.
        if (!(await affinity(pid, '0')) && alive(pid)) pinned = false;
      }
      if (!pinned) await unpin();
    },
    unpin,
  };
}
