// Servers started by tests run under a small shell that holds a pipe from this process: when this
// process ends in any way (a test runner's SIGTERM, a closed pipe, SIGKILL), the pipe closes and the
// shell kills the server, so none outlives the tests on a shared machine.

import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Starts "$@", prints its pid, and waits for it. A watcher on the inherited stdin (fd 3: background
 * jobs get /dev/null as stdin) kills it with SIGKILL once this process is gone.
 */
const GUARD = `exec 3<&0
"$@" >/dev/null 2>&1 & r=$!
echo $r
( read _ <&3; kill -9 $r 2>/dev/null ) & w=$!
wait $r; s=$?
kill $w 2>/dev/null
exit $s`;

export interface Guarded {
  /** The guarding shell: it exits when the server does. */
  proc: ChildProcess;
  /** The server itself, for signals. */
  pid: number;
}

/** Runs `command` (which must not fork away from its pid) under the guard. */
export async function spawnGuarded(command: string[], what: string): Promise<Guarded> {
  const proc = spawn('sh', ['-c', GUARD, 'sh', ...command], { stdio: ['pipe', 'pipe', 'ignore'] });
  const pid = await new Promise<number>((resolve, reject) => {
    proc.stdout.once('data', (line: Buffer) => resolve(Number(line.toString().trim())));
    proc.once('exit', () => reject(new Error(`${what} did not start`)));
  });
  return { proc, pid };
}

/** Signals the guarded server only while its guard runs: it exits with the server, so the pid cannot have been reused. */
export function signalGuarded(g: Guarded | undefined, signal: NodeJS.Signals): void {
  if (g && g.proc.exitCode === null && g.proc.signalCode === null) process.kill(g.pid, signal);
}
