// The built `locksmith` command as a real child process, with its output collected as it comes.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '../..');
export const bin = join(root, 'dist/esm/cli/main.js');

export interface Run {
  child: ChildProcess;
  code: Promise<number | null>;
  out: () => string;
  err: () => string;
  kill: (signal: NodeJS.Signals) => void;
  waitFor: (text: string) => Promise<void>;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  /** Its own process group (to signal the group as a terminal would), and its own session. */
  detached?: boolean;
  /** Another copy of the CLI script (a package installed elsewhere). */
  script?: string;
}

/** Builds the package once if a test file runs before any build. */
export function ensureBuilt(): void {
  if (!existsSync(bin)) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
}

export function cliWith(options: CliOptions, ...args: string[]): Run {
  const child = spawn(process.execPath, [options.script ?? bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    detached: options.detached === true,
  });
  let out = '';
  let err = '';
  const watchers: (() => void)[] = [];
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    watchers.forEach((w) => w());
  });
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return {
    child,
    code: new Promise((r) => child.on('exit', (code) => r(code))),
    out: () => out,
    err: () => err,
    kill: (signal) => child.kill(signal),
    waitFor: (text) =>
      new Promise((r) => {
        const check = (): void => {
          if (out.includes(text)) r();
        };
        watchers.push(check);
        check();
      }),
  };
}

export const cli = (...args: string[]): Run => cliWith({}, ...args);

/** Whether a process is still there (signal 0 probes without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
