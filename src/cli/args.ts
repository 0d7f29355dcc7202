// Command-line parsing for `locksmith`: no dependencies, strict (an unknown flag is a usage error,
// exit 2), durations with units.

export class UsageError extends Error {
  override get name(): string {
    return 'UsageError';
  }
}

export const USAGE = `usage:
  locksmith run NAME [--ttl 30s] [--wait 10s] [--backend URL] [--fence-env VAR] [--json] -- CMD [ARGS...]
  locksmith elect NAME [--value V] [--ttl 30s] [--backend URL] [--fence-env VAR] [--json] -- CMD [ARGS...]
  locksmith status NAME [--backend URL] [--json]

  run     hold the lock NAME while CMD runs (renewed automatically); exit with CMD's code
  elect   wait to become leader for NAME, then run CMD while leader
  status  show whether NAME is held, by whom, its fence and expiry

  --backend  file:[DIR] (default: no server), redis://..., rediss://...,
             redlock:redis://a,redis://b,redis://c, postgres://...
  durations  500ms, 30s, 5m, 1h (a bare number is ms); --wait also takes "inf"

exit codes: CMD's own; 2 usage; 75 the lock could not be taken; 76 the lock was lost while CMD ran`;

export interface Parsed {
  command: 'run' | 'elect' | 'status' | 'help';
  name: string;
  ttl: number;
  wait: number;
  backend: string;
  fenceEnv: string | undefined;
  value: string | undefined;
  json: boolean;
  cmd: string[];
}

const UNITS: { [unit: string]: number } = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string, flag: string, allowInfinite = false): number {
  if (allowInfinite && /^(inf|infinity|forever)$/i.test(text)) return Infinity;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  const ms = match ? Math.round(Number(match[1]) * UNITS[match[2] ?? 'ms']!) : NaN;
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) {
    throw new UsageError(`${flag}: "${text}" is not a duration (examples: 500ms, 30s, 5m)`);
  }
  return ms;
}

const FLAGS: { [command: string]: readonly string[] } = {
  run: ['--ttl', '--wait', '--backend', '--fence-env', '--json'],
  elect: ['--ttl', '--backend', '--fence-env', '--json', '--value'],
  status: ['--backend', '--json'],
};

export function parse(argv: readonly string[]): Parsed {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    return { command: 'help', name: '', ttl: 0, wait: 0, backend: '', fenceEnv: undefined, value: undefined, json: false, cmd: [] };
  }
  if (command !== 'run' && command !== 'elect' && command !== 'status') throw new UsageError(`unknown command "${command}"`);
  const allowed = FLAGS[command]!;
  const out: Parsed = {
    command,
    name: '',
    ttl: 30_000,
    wait: command === 'elect' ? Infinity : 10_000,
    backend: process.env.LOCKSMITH_BACKEND ?? 'file:',
    fenceEnv: undefined,
    value: undefined,
    json: false,
    cmd: [],
  };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === '--') {
      out.cmd = rest.slice(i + 1);
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const flag = eq >= 0 ? arg.slice(0, eq) : arg;
      if (!allowed.includes(flag)) throw new UsageError(`${command}: unknown option ${flag}`);
      if (flag === '--json') {
        if (eq >= 0) throw new UsageError('--json takes no value');
        out.json = true;
        continue;
      }
      const value = eq >= 0 ? arg.slice(eq + 1) : rest[++i];
      if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
      if (flag === '--ttl') out.ttl = parseDuration(value, flag);
      else if (flag === '--wait') out.wait = parseDuration(value, flag, true);
      else if (flag === '--backend') out.backend = value;
      else if (flag === '--value') out.value = value;
      else if (flag === '--fence-env') {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) throw new UsageError(`--fence-env: "${value}" is not an environment variable name`);
        out.fenceEnv = value;
      }
      continue;
    }
    if (out.name) throw new UsageError(`unexpected argument "${arg}" (put the command after --)`);
    out.name = arg;
  }
  if (!out.name) throw new UsageError(`${command}: NAME is required`);
  if (out.ttl < 1) throw new UsageError('--ttl must be at least 1ms');
  if (command !== 'status' && out.cmd.length === 0) throw new UsageError(`${command}: give the command to run after --`);
  if (command === 'status' && out.cmd.length > 0) throw new UsageError('status takes no command');
  return out;
}
