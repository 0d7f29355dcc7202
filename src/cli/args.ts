// Command-line parsing for `locksmith`: node:util's parseArgs, strict (an unknown flag, a bad value or
// a missing part is a usage error, exit 2, before any backend is touched), durations with units.

import { parseArgs } from 'node:util';
import { LockArgumentError } from '../errors.js';
import { checkKey } from '../options.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `usage:
  locksmith run NAME [--ttl 30s] [--wait 10s] [--backend URL] [--fence-env VAR] [--json] -- CMD [ARGS...]
  locksmith elect NAME [--value V] [--ttl 30s] [--backend URL] [--fence-env VAR] [--json] -- CMD [ARGS...]
  locksmith status NAME [--backend URL] [--json]
  locksmith limit NAME --rate 10/s [--burst N] [--wait 5s] [--backend URL] [--json] -- CMD [ARGS...]
  locksmith --version | --help

  run     hold the lock NAME while CMD runs (renewed automatically); exit with CMD's code
  elect   wait to become leader for NAME (the same election as locks.election(NAME)), then run CMD
  status  show whether NAME is held, by whom, its fence and expiry
  limit   run CMD only if the rate limiter NAME gives a token (waiting up to --wait for one)

  --backend  file:[DIR] (default: a per-user directory, no server), redis://..., rediss://...,
             redlock:redis://a,redis://b,redis://c, postgres://...
             (or LOCKSMITH_BACKEND; a password may come from LOCKSMITH_PASSWORD instead of the URL)
  durations  500ms, 30s, 5m, 1h (a bare number is ms); --ttl is at least 1s; --wait also takes "inf"
  rates      N/s, N/m, N/h, or N per a duration (100/15m); --burst defaults to N

exit codes: CMD's own; 2 usage; 75 the lock (or a token) could not be taken, or the backend failed;
            76 the lock was lost while CMD ran; 126/127 CMD could not be run`;

export type Command = 'run' | 'elect' | 'status' | 'limit';

export interface Parsed {
  command: Command | 'help' | 'version';
  name: string;
  ttl: number;
  wait: number;
  backend: string;
  fenceEnv: string | undefined;
  value: string | undefined;
  json: boolean;
  cmd: string[];
  /** limit: tokens per interval (ms), and the bucket's size. */
  rate: { limit: number; interval: number; burst: number } | undefined;
}

const UNITS: { [unit: string]: number } = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** The shortest ttl the CLI takes: renewal runs every ttl/3, which a busy machine must keep up with. */
export const MIN_TTL_MS = 1_000;

export function parseDuration(text: string, flag: string, allowInfinite = false): number {
  if (allowInfinite && /^(inf|infinity|forever)$/i.test(text)) return Infinity;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  const ms = match ? Math.round(Number(match[1]) * UNITS[match[2] ?? 'ms']!) : NaN;
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) {
    throw new UsageError(`${flag}: "${text}" is not a duration (examples: 500ms, 30s, 5m)`);
  }
  return ms;
}

/**
 * Variables a fence must never be written into: each changes how the command (or the loader, or a
 * shell it starts) runs, so a name from a config file could turn --fence-env into code execution.
 */
const UNSAFE_ENV =
  /^(PATH|PATHEXT|IFS|ENV|BASH_ENV|SHELLOPTS|BASHOPTS|PS4|CDPATH|HOME|SHELL|TMPDIR|GLIBC_TUNABLES|GCONV_PATH|HOSTALIASES|LOCALDOMAIN|RES_OPTIONS|PERLLIB|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|(LD|DYLD|NODE|NPM|PYTHON|PERL5|RUBY|MALLOC|LOCKSMITH)_?[A-Z0-9_]*)$/i;

function checkFenceEnv(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--fence-env: "${printable(name)}" is not an environment variable name`);
  if (UNSAFE_ENV.test(name)) throw new UsageError(`--fence-env: ${name} changes how the command runs; choose another name (e.g. FENCE)`);
  return name;
}

/** Text safe to print on a terminal: control characters (C0, DEL, C1) shown as escapes. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** "10/s", "100/m", "5/1500ms": a count per a duration (a bare unit is one of it). */
export function parseRate(text: string): { limit: number; interval: number } {
  const match = /^(\d+)\/(\d+(?:\.\d+)?)?(ms|s|m|h)$/.exec(text);
  const limit = match ? Number(match[1]) : NaN;
  const interval = match ? parseDuration(`${match[2] ?? '1'}${match[3]!}`, '--rate') : NaN;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1_000_000_000 || !(interval >= 1)) {
    throw new UsageError(`--rate: "${printable(text)}" is not a rate (examples: 10/s, 100/m, 5/1500ms)`);
  }
  return { limit, interval };
}

const OPTIONS = {
  ttl: { type: 'string' },
  wait: { type: 'string' },
  backend: { type: 'string' },
  'fence-env': { type: 'string' },
  value: { type: 'string' },
  rate: { type: 'string' },
  burst: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const ALLOWED: { [C in Command]: readonly (keyof typeof OPTIONS)[] } = {
  run: ['ttl', 'wait', 'backend', 'fence-env', 'json'],
  elect: ['ttl', 'backend', 'fence-env', 'json', 'value'],
  status: ['backend', 'json'],
  limit: ['rate', 'burst', 'wait', 'backend', 'json'],
};

const EMPTY: Omit<Parsed, 'command'> = {
  name: '',
  ttl: 0,
  wait: 0,
  backend: '',
  fenceEnv: undefined,
  value: undefined,
  json: false,
  cmd: [],
  rate: undefined,
};

export function parse(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Parsed {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError('no command given');
  if (command === 'help' || command === '--help' || command === '-h') return { command: 'help', ...EMPTY };
  if (command === '--version' || command === '-V') return { command: 'version', ...EMPTY };
  if (command !== 'run' && command !== 'elect' && command !== 'status' && command !== 'limit')
    throw new UsageError(`unknown command "${printable(command)}"`);
  // Everything after the first "--" is the command, untouched by option parsing.
  const cut = rest.indexOf('--');
  const own = cut >= 0 ? rest.slice(0, cut) : rest;
  const cmd = cut >= 0 ? rest.slice(cut + 1) : [];
  let values: { [k: string]: string | boolean | undefined };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: own, options: OPTIONS, strict: true, allowPositionals: true }));
  } catch (error) {
    throw new UsageError(`${command}: ${printable((error as Error).message.split('\n')[0] ?? '')}`);
  }
  for (const flag of Object.keys(values)) {
    if (!ALLOWED[command].includes(flag as keyof typeof OPTIONS)) throw new UsageError(`${command}: unknown option --${flag}`);
  }
  const text = (flag: string): string | undefined => {
    const v = values[flag];
    if (v === '') throw new UsageError(`--${flag} needs a value`);
    return typeof v === 'string' ? v : undefined;
  };
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${printable(positionals[1]!)}" (put the command after --)`);
  const name = positionals[0];
  if (name === undefined) throw new UsageError(`${command}: NAME is required`);
  try {
    checkKey(name, 'NAME');
  } catch (error) {
    if (error instanceof LockArgumentError) throw new UsageError(error.message);
    throw error;
  }
  const ttl = text('ttl') === undefined ? 30_000 : parseDuration(text('ttl')!, '--ttl');
  if (ttl < MIN_TTL_MS) throw new UsageError(`--ttl must be at least ${MIN_TTL_MS / 1000}s (the lease is renewed every ttl/3)`);
  const wait =
    text('wait') === undefined
      ? command === 'elect'
        ? Infinity
        : command === 'limit'
          ? 0
          : 10_000
      : parseDuration(text('wait')!, '--wait', true);
  const fenceEnv = text('fence-env') === undefined ? undefined : checkFenceEnv(text('fence-env')!);
  if (command === 'status' && cut >= 0) throw new UsageError('status takes no command');
  if (command !== 'status' && (cmd.length === 0 || cmd[0] === '')) throw new UsageError(`${command}: give the command to run after --`);
  let rate: Parsed['rate'];
  if (command === 'limit') {
    if (text('rate') === undefined) throw new UsageError('limit: --rate is required (e.g. --rate 10/s)');
    const { limit, interval } = parseRate(text('rate')!);
    const burst = text('burst') === undefined ? limit : Number(text('burst'));
    if (!Number.isSafeInteger(burst) || burst < 1 || burst > 1_000_000_000)
      throw new UsageError(`--burst: "${printable(text('burst')!)}" is not a positive whole number`);
    rate = { limit, interval, burst };
  }
  return {
    command,
    name,
    rate,
    ttl,
    wait,
    backend: text('backend') ?? env.LOCKSMITH_BACKEND ?? 'file:',
    fenceEnv,
    value: text('value'),
    json: values.json === true,
    cmd,
  };
}
