#!/usr/bin/env node
// The `locksmith` command: holds a lock (or leadership) while a command runs, or shows a lock's state.

import { readFileSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { LockArgumentError, LockError, LockTimeoutError } from '../errors.js';
import type { Lock } from '../lock.js';
import { Locksmith } from '../locksmith.js';
import { USAGE, UsageError, parse, printable, type Parsed } from './args.js';
import { PRIVATE_ENV, backendFor, type OpenBackend } from './backends.js';
import { Supervisor, signalCode } from './child.js';

const EXIT_USAGE = 2;
const EXIT_NOT_TAKEN = 75; // EX_TEMPFAIL: try again later (held, or the backend failed)
const EXIT_LOST = 76;
const KILL_AFTER_MS = 10_000;

function say(line: string): void {
  process.stderr.write(`locksmith: ${line}\n`);
}

/** JSON with bigints as strings and every control character escaped (C1 too, which JSON allows raw). */
function json(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).replace(
    /[\u007f-\u009f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function report(parsed: Parsed, event: Record<string, unknown>): void {
  if (parsed.json) process.stderr.write(json({ name: parsed.name, ...event }) + '\n');
}

/** The package's version, read next to the running script (dist/<format>/cli/main.js), in either module format. */
function version(): string {
  const script = realpathSync(process.argv[1] ?? '.');
  const pkg = JSON.parse(readFileSync(join(dirname(script), '../../../package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function status(locks: Locksmith, parsed: Parsed): Promise<number> {
  const info = await locks.inspect(parsed.name);
  if (parsed.json) {
    process.stdout.write(json({ name: parsed.name, held: info !== null, mode: info?.mode ?? null, holders: info?.holders ?? [] }) + '\n');
    return 0;
  }
  const name = printable(parsed.name);
  if (!info) {
    process.stdout.write(`${name}: free\n`);
    return 0;
  }
  process.stdout.write(`${name}: held (${info.mode}) by ${info.holders.length} holder${info.holders.length === 1 ? '' : 's'}\n`);
  for (const h of info.holders) {
    const left = Number.isFinite(h.expiresAt)
      ? `expires in ${((h.expiresAt - Date.now()) / 1000).toFixed(1)}s`
      : 'held while its connection lives';
    process.stdout.write(`  owner ${printable(h.owner)}  fence ${h.fence}  ${left}\n`);
  }
  return 0;
}

/** The lease to hold: the lock itself (run), or the term of the election that `locks.election` runs (elect). */
async function take(
  locks: Locksmith,
  parsed: Parsed,
  signal: AbortSignal,
): Promise<{ fence: bigint; signal: AbortSignal; owner: string; expiresAt: number; release: () => Promise<void> }> {
  if (parsed.command === 'run') {
    const lock: Lock = await locks.acquire(parsed.name, { ttl: parsed.ttl, wait: parsed.wait, signal, autoRenew: true });
    return { fence: lock.fence, signal: lock.signal, owner: lock.owner, expiresAt: lock.expiresAt, release: () => lock.release() };
  }
  const election = locks.election(parsed.name, { value: parsed.value ?? `${hostname()}:${process.pid}`, ttl: parsed.ttl });
  const leader = await election.campaign({ signal });
  return {
    fence: leader.fence,
    signal: election.signal!,
    owner: leader.value,
    expiresAt: leader.expiresAt,
    release: () => election.resign(),
  };
}

/** The command's environment: the CLI's own, without what the CLI keeps private, plus `extra`. */
function commandEnv(extra: { [name: string]: string }): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const name of PRIVATE_ENV) delete env[name];
  return env;
}

/** The one line (and JSON event) for a lock that could not be taken. */
function notTaken(parsed: Parsed, error: unknown): number {
  const cause = (error as Error).cause instanceof Error ? `: ${((error as Error).cause as Error).message}` : '';
  const why =
    error instanceof LockTimeoutError
      ? `is held by another owner (waited ${(error.waited / 1000).toFixed(1)}s)`
      : `could not be taken: ${(error as Error).message}${cause}`;
  say(`${printable(parsed.name)} ${why}`);
  report(parsed, { event: 'not-taken', error: error instanceof LockError ? error.code : String(error) });
  return EXIT_NOT_TAKEN;
}

/** run and elect: take the lock, run the command while it is held, give it back. */
async function hold(locks: Locksmith, parsed: Parsed, guard: Supervisor): Promise<number> {
  let lease;
  try {
    lease = await take(locks, parsed, guard.interrupted.signal);
  } catch (error) {
    if (guard.received) return signalCode(guard.received);
    if (error instanceof LockArgumentError) throw error;
    return notTaken(parsed, error);
  }
  report(parsed, {
    event: parsed.command === 'elect' ? 'elected' : 'acquired',
    owner: lease.owner,
    fence: lease.fence,
    expiresAt: lease.expiresAt,
  });
  const command = guard.start(parsed.cmd, commandEnv(parsed.fenceEnv ? { [parsed.fenceEnv]: lease.fence.toString() } : {}), say);
  let lost = false;
  let killer: NodeJS.Timeout | undefined;
  const onLost = (): void => {
    lost = true;
    say(`${printable(parsed.name)} was lost while the command ran (${(lease.signal.reason as Error).message}); stopping it`);
    report(parsed, { event: 'lost' });
    command.child.kill('SIGTERM');
    killer = setTimeout(() => command.child.kill('SIGKILL'), KILL_AFTER_MS);
    killer.unref();
  };
  if (lease.signal.aborted) onLost();
  else lease.signal.addEventListener('abort', onLost, { once: true });
  const code = await command.exit;
  if (killer) clearTimeout(killer);
  if (lost) return EXIT_LOST;
  try {
    await lease.release();
    report(parsed, { event: 'released', code });
  } catch (error) {
    say(`${printable(parsed.name)}: release failed: ${(error as Error).message}`);
    report(parsed, { event: 'release-failed', code });
    return code === 0 ? EXIT_LOST : code;
  }
  return code;
}

/** limit: take a token (waiting up to --wait), then run the command; no token is exit 75. */
async function limited(locks: Locksmith, parsed: Parsed, guard: Supervisor): Promise<number> {
  const limiter = locks.rateLimiter(parsed.name, parsed.rate!);
  let decision;
  try {
    decision = await limiter.take({ wait: parsed.wait, signal: guard.interrupted.signal });
  } catch (error) {
    if (guard.received) return signalCode(guard.received);
    throw error;
  }
  if (!decision.allowed) {
    say(`${printable(parsed.name)}: no token (the next one in ${(decision.retryAfter / 1000).toFixed(1)}s)`);
    report(parsed, { event: 'refused', retryAfter: decision.retryAfter });
    return EXIT_NOT_TAKEN;
  }
  report(parsed, { event: 'allowed', remaining: decision.remaining });
  return guard.start(parsed.cmd, commandEnv({}), say).exit;
}

async function open(parsed: Parsed): Promise<{ locks: Locksmith; opened: OpenBackend }> {
  const opened = await backendFor(parsed.backend);
  return { locks: new Locksmith(opened.backend, { ttl: parsed.ttl || 30_000 }), opened };
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
  if (parsed.command === 'help' || parsed.command === 'version') {
    process.stdout.write(`${parsed.command === 'help' ? USAGE : version()}\n`);
    return 0;
  }
  let session: { locks: Locksmith; opened: OpenBackend } | undefined;
  try {
    session = await open(parsed);
    const { locks } = session;
    locks.on('error', (error) => say(`warning: ${printable((error as Error).message)}`));
    if (parsed.command === 'status') return await status(locks, parsed);
    const guard = new Supervisor();
    try {
      return await (parsed.command === 'limit' ? limited(locks, parsed, guard) : hold(locks, parsed, guard));
    } finally {
      guard.close();
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof LockArgumentError) {
      say(error.message);
      return EXIT_USAGE;
    }
    // Every backend failure is the same exit code, whatever the backend or the subcommand.
    say(`${printable(parsed.name)} could not be ${parsed.command === 'status' ? 'read' : 'taken'}: ${printable((error as Error).message)}`);
    return EXIT_NOT_TAKEN;
  } finally {
    await session?.locks.close().catch(() => undefined);
    await session?.opened.close().catch(() => undefined);
  }
}

/** After main settles, how long a client's leftover socket (a TLS handshake torn down, say) may delay the exit. */
const EXIT_GRACE_MS = 300;

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
  },
  (error: unknown) => {
    say(error instanceof Error ? printable(error.message) : String(error));
    process.exitCode = 1;
  },
);
