#!/usr/bin/env node
// The `locksmith` command: holds a lock (or leadership) while a command runs, or shows a lock's state.

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:os';
import { LockError, LockTimeoutError } from '../errors.js';
import { Locksmith } from '../locksmith.js';
import { USAGE, UsageError, parse, type Parsed } from './args.js';
import { backendFor, type OpenBackend } from './backends.js';

const EXIT_USAGE = 2;
const EXIT_NOT_TAKEN = 75; // EX_TEMPFAIL: try again later
const EXIT_LOST = 76;
const KILL_AFTER_MS = 10_000;
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

function say(line: string): void {
  process.stderr.write(`locksmith: ${line}\n`);
}

function report(parsed: Parsed, event: Record<string, unknown>): void {
  if (parsed.json) process.stderr.write(JSON.stringify({ name: parsed.name, ...event }, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
}

function signalCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

async function status(locks: Locksmith, parsed: Parsed): Promise<number> {
  const info = await locks.inspect(parsed.name);
  if (parsed.json) {
    const out = { name: parsed.name, held: info !== null, mode: info?.mode ?? null, holders: info?.holders ?? [] };
    process.stdout.write(JSON.stringify(out, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
    return 0;
  }
  if (!info) {
    process.stdout.write(`${parsed.name}: free\n`);
    return 0;
  }
  process.stdout.write(`${parsed.name}: held (${info.mode}) by ${info.holders.length} holder${info.holders.length === 1 ? '' : 's'}\n`);
  for (const h of info.holders) {
    const left = Number.isFinite(h.expiresAt) ? `expires in ${((h.expiresAt - Date.now()) / 1000).toFixed(1)}s` : 'held while its connection lives';
    process.stdout.write(`  owner ${h.owner}  fence ${h.fence}  ${left}\n`);
  }
  return 0;
}

/** run and elect: take the lock, run the command while it is held, give it back. */
async function hold(locks: Locksmith, parsed: Parsed): Promise<number> {
  const interrupted = new AbortController();
  let received: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    received ??= signal;
    if (child) child.kill(signal);
    else interrupted.abort(new Error(`interrupted by ${signal}`));
  };
  for (const s of FORWARDED) process.on(s, onSignal);
  try {
    let lock;
    try {
      lock = await locks.acquire(parsed.name, {
        ttl: parsed.ttl,
        wait: parsed.wait,
        signal: interrupted.signal,
        autoRenew: true,
        ...(parsed.value !== undefined ? { owner: `${parsed.value}~${randomUUID().slice(0, 8)}` } : {}),
      });
    } catch (error) {
      if (received) return signalCode(received);
      const cause = (error as Error).cause instanceof Error ? `: ${((error as Error).cause as Error).message}` : '';
      const why = error instanceof LockTimeoutError ? `is held by another owner (waited ${(error.waited / 1000).toFixed(1)}s)` : `could not be taken: ${(error as Error).message}${cause}`;
      say(`${parsed.name} ${why}`);
      report(parsed, { event: 'not-taken', error: error instanceof LockError ? error.code : String(error) });
      return EXIT_NOT_TAKEN;
    }
    report(parsed, { event: parsed.command === 'elect' ? 'elected' : 'acquired', owner: lock.owner, fence: lock.fence, expiresAt: lock.expiresAt });

    const env = { ...process.env };
    if (parsed.fenceEnv) env[parsed.fenceEnv] = lock.fence.toString();
    const [cmd, ...args] = parsed.cmd;
    child = spawn(cmd!, args, { stdio: 'inherit', env });
    let lost = false;
    let killer: NodeJS.Timeout | undefined;
    lock.signal.addEventListener('abort', () => {
      lost = true;
      say(`${parsed.name} was lost while the command ran (${(lock.signal.reason as Error).message}); stopping it`);
      report(parsed, { event: 'lost' });
      child?.kill('SIGTERM');
      killer = setTimeout(() => child?.kill('SIGKILL'), KILL_AFTER_MS);
      killer.unref();
    });
    const code = await new Promise<number>((resolve) => {
      child!.on('error', (error: NodeJS.ErrnoException) => {
        say(`cannot run ${cmd}: ${error.message}`);
        resolve(error.code === 'ENOENT' ? 127 : 126);
      });
      child!.on('exit', (exitCode, signal) => resolve(exitCode ?? signalCode(signal ?? 'SIGTERM')));
    });
    if (killer) clearTimeout(killer);
    if (!lost) {
      try {
        await lock.release();
        report(parsed, { event: 'released', code });
      } catch (error) {
        say(`${parsed.name}: release failed: ${(error as Error).message}`);
        report(parsed, { event: 'release-failed', code });
        return code === 0 ? EXIT_LOST : code;
      }
    }
    return lost ? EXIT_LOST : code;
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    say(error.message);
    process.stderr.write(`${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (parsed.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let locks: Locksmith;
  let opened: OpenBackend;
  try {
    opened = await backendFor(parsed.backend);
    locks = new Locksmith(opened.backend, { ttl: parsed.ttl });
  } catch (error) {
    if (error instanceof UsageError) {
      say(error.message);
      return EXIT_USAGE;
    }
    say(`${parsed.name} could not be taken: ${(error as Error).message}`);
    return EXIT_NOT_TAKEN;
  }
  locks.on('error', (error) => say(`warning: ${(error as Error).message}`));
  try {
    return parsed.command === 'status' ? await status(locks, parsed) : await hold(locks, parsed);
  } finally {
    await locks.close();
    await opened.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    say(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  },
);
