// The command the CLI runs under a lock. It must never outlive the lock: every catchable signal that
// would end the CLI is forwarded to it instead (the CLI then waits for it, releases, and exits with
// its code), and on Linux the command is started under a parent-death signal, so even a CLI killed
// with SIGKILL takes its command with it.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';

/**
 * Signals whose default action ends the CLI and that a process can catch. SIGUSR1 is left to Node
 * (it starts the inspector, it does not end the process); SIGKILL and SIGSTOP cannot be caught.
 */
const ENDING: readonly NodeJS.Signals[] = (
  [
    'SIGHUP',
    'SIGINT',
    'SIGQUIT',
    'SIGTERM',
    'SIGUSR2',
    'SIGALRM',
    'SIGVTALRM',
    'SIGPROF',
    'SIGXCPU',
    'SIGXFSZ',
    'SIGIO',
    'SIGPWR',
    'SIGSYS',
  ] as const
).filter((s) => s in constants.signals);

/** Sent by a terminal to its whole foreground process group, which the command shares in a terminal. */
const FROM_TERMINAL: ReadonlySet<NodeJS.Signals> = new Set(['SIGINT', 'SIGQUIT']);

const SETPRIV = '/usr/bin/setpriv';

export function signalCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** Calls `on` for each ending signal the CLI receives until the returned function is called. */
export function trapSignals(on: (signal: NodeJS.Signals) => void): () => void {
  const trapped: NodeJS.Signals[] = [];
  for (const s of ENDING) {
    try {
      process.on(s, on);
      trapped.push(s);
    } catch {
      // Not a signal this platform lets a process catch: nothing to forward.
    }
  }
  return () => {
    for (const s of trapped) process.off(s, on);
  };
}

export interface Command {
  child: ChildProcess;
  /** Settles with the command's exit code (128 + signal when a signal ended it; 126/127 when it never ran). */
  exit: Promise<number>;
  /** Passes a signal the CLI received on, once. */
  forward: (signal: NodeJS.Signals) => void;
}

/**
 * Starts the command. Interactive (stdin is a terminal): it stays in the CLI's process group so it
 * can use the terminal, and the signals a terminal sends to the whole group are not forwarded again.
 * Otherwise it gets a process group of its own, so a signal sent to the CLI's group reaches it once,
 * through the CLI.
 */
export function startCommand(argv: readonly string[], env: NodeJS.ProcessEnv, onError: (message: string) => void): Command {
  const interactive = process.stdin.isTTY === true;
  const [cmd, ...args] = argv;
  // setpriv (util-linux) sets PR_SET_PDEATHSIG and then execs the command in the same process.
  const guarded = process.platform === 'linux' && existsSync(SETPRIV);
  const child = guarded
    ? spawn(SETPRIV, ['--pdeathsig', 'SIGKILL', '--', cmd!, ...args], { stdio: 'inherit', env, detached: !interactive })
    : spawn(cmd!, args, { stdio: 'inherit', env, detached: !interactive });
  const exit = new Promise<number>((resolve) => {
    child.on('error', (error: NodeJS.ErrnoException) => {
      onError(`cannot run ${cmd}: ${error.message}`);
      resolve(error.code === 'ENOENT' ? 127 : 126);
    });
    child.on('exit', (code, signal) => resolve(code ?? signalCode(signal ?? 'SIGTERM')));
  });
  return {
    child,
    exit,
    forward: (signal) => {
      if (interactive && FROM_TERMINAL.has(signal)) return; // the terminal sent it to the command too
      child.kill(signal);
    },
  };
}

/**
 * The signals of one CLI run: before the command starts, a signal aborts `interrupted` (the wait for
 * the lock or the token gives up); once it runs, signals go to the command, once each.
 */
export class Supervisor {
  readonly interrupted = new AbortController();
  received: NodeJS.Signals | undefined;
  #command: Command | undefined;
  readonly #untrap: () => void;

  constructor() {
    this.#untrap = trapSignals((signal) => {
      this.received ??= signal;
      if (this.#command) this.#command.forward(signal);
      else this.interrupted.abort(new Error(`interrupted by ${signal}`));
    });
  }

  start(argv: readonly string[], env: NodeJS.ProcessEnv, onError: (message: string) => void): Command {
    const command = startCommand(argv, env, onError);
    this.#command = command;
    if (this.received) command.child.kill(this.received); // a signal that came while it was starting
    return command;
  }

  close(): void {
    this.#untrap();
  }
}
