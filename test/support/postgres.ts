// PostgreSQL for tests. Most tests use the machine's server (127.0.0.1:5432 with trust auth, or the
// PG* / DATABASE_URL environment) but only through a database of their own, created here and
// dropped afterwards. Tests that restart or kill the server start a private one (initdb in a temp
// dir, on a free port, under the guard of guard.ts), never touching the machine's.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { signalGuarded, spawnGuarded, type Guarded } from './guard.js';
import { freePort } from './redis.js';

const run = promisify(execFile);

/** Connection settings of the server to make throw-away databases on. */
export function serverConfig(): pg.ClientConfig {
  if (process.env.DATABASE_URL) return { connectionString: process.env.DATABASE_URL };
  return {
    host: process.env.PGHOST ?? '127.0.0.1',
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? 'postgres',
    ...(process.env.PGPASSWORD ? { password: process.env.PGPASSWORD } : {}),
    database: process.env.PGDATABASE ?? 'postgres',
  };
}

export interface TestDatabase {
  config: pg.ClientConfig;
  /** A new pool on the database, ended by drop(). */
  pool(options?: pg.PoolConfig): pg.Pool;
  /** A one-off query on the database (its own short-lived connection). */
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  drop(): Promise<void>;
}

async function admin<T>(config: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A fresh database on `server` (default: the machine's), dropped with everything in it by drop(). */
export async function createDatabase(server: pg.ClientConfig = serverConfig()): Promise<TestDatabase> {
  const name = `locksmith_test_${randomBytes(6).toString('hex')}`;
  await admin(server, (c) => c.query(`CREATE DATABASE ${name}`));
  const config: pg.ClientConfig = server.connectionString
    ? { connectionString: server.connectionString.replace(/\/[^/?]*(\?|$)/, `/${name}$1`) }
    : { ...server, database: name };
  const pools: pg.Pool[] = [];
  return {
    config,
    pool(options) {
      const pool = new pg.Pool({ ...config, ...options });
      // An idle client whose session the server ended (a test terminating backends) is dropped.
      pool.on('error', () => undefined);
      pools.push(pool);
      return pool;
    },
    query: (text, values) => admin(config, (c) => c.query(text, values)),
    async drop() {
      await Promise.all(pools.splice(0).map((p) => p.end().catch(() => undefined)));
      await admin(server, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(() => undefined);
    },
  };
}

const BIN = '/usr/lib/postgresql';

async function pgBin(tool: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `ls -d ${BIN}/*/bin | sort -V | tail -1`]);
  return join(stdout.trim(), tool);
}

async function initdb(dir: string, asPostgres: string[]): Promise<void> {
  const [cmd, ...args] = [...asPostgres, await pgBin('initdb'), '-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync'];
  await run(cmd, args, { timeout: 60_000 });
}

/** A private PostgreSQL server (initdb'd here) that a test may stop, kill, pause and restart. */
export class PostgresServer {
  readonly port: number;
  readonly dir: string;
  #server: Guarded | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async start(): Promise<PostgresServer> {
    const dir = mkdtempSync(join(tmpdir(), 'locksmith-pg-'));
    // initdb and postgres refuse to run as root: run them as the postgres user, who must own the dir.
    chmodSync(dir, 0o777);
    const asPostgres = process.getuid?.() === 0 ? ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups'] : [];
    await initdb(dir, asPostgres);
    const server = new PostgresServer(await freePort(), dir);
    // Empty clusters for wipe(), copied in the background: a fault that restarts the server empty
    // then measures the lock's recovery, not initdb's or a copy's (seconds on a loaded machine).
    const spares = [0, 1, 2].map((i) => join(dir, `spare-0${i}`));
    await Promise.all([join(dir, 'pristine'), ...spares].map((to) => run('cp', ['-a', join(dir, 'data'), to])));
    server.#spares = spares;
    server.#asPostgres = asPostgres;
    all.add(server);
    await server.restart();
    return server;
  }

  #asPostgres: string[] = [];

  get config(): pg.ClientConfig {
    return { host: '127.0.0.1', port: this.port, user: 'postgres', database: 'postgres' };
  }

  /** A one-off query on its postgres database. */
  query(text: string, values?: unknown[]): Promise<pg.QueryResult> {
    return admin(this.config, (c) => c.query(text, values));
  }

  async restart(): Promise<void> {
    const postgres = await pgBin('postgres');
    const settings = [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${this.dir}`,
      '-c',
      'fsync=off',
      '-c',
      'max_connections=50',
    ];
    this.#server = await spawnGuarded(
      [...this.#asPostgres, postgres, '-D', join(this.dir, 'data'), '-p', String(this.port), ...settings],
      `postgres on ${this.port}`,
    );
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await admin(this.config, (c) => c.query('SELECT 1'));
        return;
      } catch {
        // not up yet
      }
      if (this.#server.proc.exitCode !== null) throw new Error(`postgres on ${this.port} exited with ${this.#server.proc.exitCode}`);
      if (Date.now() > deadline) throw new Error(`postgres on ${this.port} did not start`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The postmaster and every process it started (sessions, background workers). */
  async #processes(): Promise<number[]> {
    const pid = this.#server?.pid;
    if (!pid || this.#server?.proc.exitCode !== null) return [];
    const { stdout } = await run('pgrep', ['-P', String(pid)]).catch(() => ({ stdout: '' }));
    return [pid, ...stdout.split('\n').filter(Boolean).map(Number)];
  }

  /** SIGSTOP to the whole server: the postmaster first, so it starts no one new meanwhile. */
  async pause(): Promise<void> {
    for (const pid of await this.#processes()) process.kill(pid, 'SIGSTOP');
  }

  /** SIGCONT, children first: the postmaster wakes to a server that runs. */
  async resume(): Promise<void> {
    for (const pid of (await this.#processes()).reverse()) process.kill(pid, 'SIGCONT');
  }

  /** A server that lost everything: a new, empty cluster in its place (stop it first). */
  async wipe(): Promise<void> {
    // Three ready (a CI run's faults), then copies made meanwhile.
    const spare = this.#spares.shift() ?? (await (this.#spare ?? this.#copy()));
    if (this.#spares.length === 0) this.#spare = this.#copy();
    const trash = join(this.dir, `trash-${(this.#copies += 1)}`);
    renameSync(join(this.dir, 'data'), trash);
    renameSync(spare, join(this.dir, 'data'));
    void run('rm', ['-rf', trash]).catch(() => undefined);
  }

  #spares: string[] = [];
  #spare: Promise<string> | undefined;
  #copies = 0;

  /** A fresh copy of the empty cluster made at start, for the next wipe(). */
  async #copy(): Promise<string> {
    const to = join(this.dir, `spare-${(this.#copies += 1)}`);
    await run('cp', ['-a', join(this.dir, 'pristine'), to]);
    return to;
  }

  /** kill -9 of the whole server at once, as a machine crash would end it. */
  async kill(): Promise<void> {
    const proc = this.#server?.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    for (const pid of await this.#processes()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await exited;
  }

  /** Immediate shutdown (SIGQUIT to the postmaster): every session ends, no checkpoint. */
  async crash(): Promise<void> {
    await this.#stopWith('SIGQUIT');
  }

  /** Fast shutdown (SIGINT): sessions are terminated, then a clean checkpoint. */
  async stop(): Promise<void> {
    await this.#stopWith('SIGINT');
  }

  async #stopWith(signal: NodeJS.Signals): Promise<void> {
    const proc = this.#server?.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    signalGuarded(this.#server, signal);
    await exited;
  }

  async destroy(): Promise<void> {
    await this.#stopWith('SIGKILL');
    all.delete(this);
    await this.#spare?.catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const all = new Set<PostgresServer>();

/** For after() hooks: no private server outlives its tests (the guard covers a process that dies). */
export async function destroyAll(): Promise<void> {
  await Promise.all([...all].map((s) => s.destroy()));
}
