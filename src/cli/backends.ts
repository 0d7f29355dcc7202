// Backend URLs for the CLI. Each backend module and client library is imported only when its scheme
// is used, so the file backend (the default) needs no client library and no server.
//
// URLs are parsed here (WHATWG URL) and clients get option objects, never the URL: a client that
// parses it itself may print it whole in a warning, password included. Every message about a URL
// shows it redacted.

import type { LockBackend } from '../backend.js';
import { UsageError, printable } from './args.js';
import { redisClient, type RedisTarget } from './redis-client.js';

export interface OpenBackend {
  backend: LockBackend;
  /** Closes the clients the CLI created for the backend (the backend never closes a caller's client). */
  close: () => Promise<void>;
}

/** Environment variables the CLI reads for itself and never passes on to the command. */
export const PRIVATE_ENV = ['LOCKSMITH_BACKEND', 'LOCKSMITH_PASSWORD'] as const;

/** Imports a module by a computed name, so the build does not require optional packages or backends. */
export async function optional<T>(specifier: string, what: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UsageError(
        `${what} is not available: install it (${specifier.startsWith('.') ? 'a newer locksmith' : `npm install ${specifier}`})`,
      );
    }
    throw error;
  }
}

/** The URL as it may be printed: no password, no control characters. */
export function redact(url: string): string {
  return printable(url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*:)[^@/]*@/i, '$1***@'));
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new UsageError(`--backend: "${redact(url)}" is not a valid URL`);
  }
}

/** The password: the URL's, or LOCKSMITH_PASSWORD's (kept off the command line, where ps shows it). */
function password(u: URL, env: NodeJS.ProcessEnv): string | undefined {
  return u.password ? decodeURIComponent(u.password) : env.LOCKSMITH_PASSWORD || undefined;
}

function redisTarget(url: string, env: NodeJS.ProcessEnv): RedisTarget {
  const u = parseUrl(url);
  if (u.search || u.hash) throw new UsageError(`--backend: "${redact(url)}": query strings are not supported in redis:// URLs`);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db))
    throw new UsageError(`--backend: "${redact(url)}": the database must be a number (redis://host:port/0)`);
  const port = u.port === '' ? 6379 : Number(u.port);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port,
    tls: u.protocol === 'rediss:',
    db: db === '' ? 0 : Number(db),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: password(u, env),
  };
}

type PgPool = { end(): Promise<void>; on(e: 'error', l: () => void): unknown };

function pgConfig(url: string, env: NodeJS.ProcessEnv): object {
  const u = parseUrl(url);
  const ssl = u.searchParams.get('sslmode');
  for (const key of u.searchParams.keys()) {
    if (key !== 'sslmode') throw new UsageError(`--backend: "${redact(url)}": only sslmode is supported in postgres:// query strings`);
  }
  if (ssl !== null && !['disable', 'prefer', 'require', 'no-verify', 'verify-ca', 'verify-full'].includes(ssl)) {
    throw new UsageError(`--backend: sslmode=${printable(ssl)} is not one of disable, require, no-verify, verify-ca, verify-full`);
  }
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port === '' ? 5432 : Number(u.port),
    user: u.username ? decodeURIComponent(u.username) : undefined,
    password: password(u, env),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || undefined,
    ssl: ssl === null || ssl === 'disable' ? false : ssl === 'verify-ca' || ssl === 'verify-full' ? true : { rejectUnauthorized: false },
    max: 4,
    connectionTimeoutMillis: 5_000,
  };
}

async function fileOpen(url: string): Promise<OpenBackend> {
  if (process.platform === 'win32') {
    // file: is the default, so this is what a Windows user meets first: say what works instead.
    throw new UsageError(
      'the file backend (the default) does not run on Windows; pick another with --backend or LOCKSMITH_BACKEND: redis://host:6379, redlock:redis://a,redis://b,redis://c or postgres://user@host/db',
    );
  }
  const rest = url.slice('file:'.length);
  // file: is the default directory; file:DIR and file:///abs/dir name one; file:// names nothing.
  if (rest.startsWith('//') && !rest.startsWith('///'))
    throw new UsageError('--backend: file:// needs a path (file:///var/lock/app, or file:DIR)');
  const dir = rest.replace(/^\/\/(?=\/)/, '');
  const { fileBackend } = await import('../backends/file/index.js');
  return { backend: fileBackend(dir ? { dir } : {}), close: () => Promise.resolve() };
}

export async function backendFor(url: string, env: NodeJS.ProcessEnv = process.env): Promise<OpenBackend> {
  if (url.startsWith('file:')) return fileOpen(url);
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const target = redisTarget(url, env);
    const { redisBackend } = await optional<{ redisBackend: (o: object) => LockBackend }>(
      '../backends/redis/index.js',
      'the redis backend',
    );
    const client = await redisClient(target);
    return { backend: redisBackend({ client: client.raw }), close: client.close };
  }
  if (url.startsWith('redlock:')) {
    const urls = url.slice('redlock:'.length).split(',').filter(Boolean);
    if (urls.length < 3 || !urls.every((u) => u.startsWith('redis://') || u.startsWith('rediss://'))) {
      throw new UsageError('--backend redlock: needs at least three redis:// URLs, comma-separated');
    }
    const targets = urls.map((u) => redisTarget(u, env));
    const { redlockBackend } = await optional<{ redlockBackend: (o: object) => LockBackend }>(
      '../backends/redlock/index.js',
      'the redlock backend',
    );
    const settled = await Promise.allSettled(targets.map(redisClient));
    const clients = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const closeAll = async (): Promise<void> => void (await Promise.all(clients.map((c) => c.close())));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) {
      await closeAll();
      throw failed.reason;
    }
    return { backend: redlockBackend({ clients: clients.map((c) => c.raw) }), close: closeAll };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const config = pgConfig(url, env);
    const { postgresBackend } = await optional<{ postgresBackend: (o: object) => LockBackend }>(
      '../backends/postgres/index.js',
      'the postgres backend',
    );
    const pg = await optional<{ default: { Pool: new (o: object) => PgPool } }>('pg', 'the postgres backend needs pg, which');
    const pool = new pg.default.Pool(config);
    // An idle connection the server ends emits on the pool; the pool then drops it.
    pool.on('error', () => undefined);
    return { backend: postgresBackend({ pool }), close: () => pool.end() };
  }
  if (url.startsWith('etcd://')) {
    const hosts = url.slice('etcd://'.length).split(',').filter(Boolean);
    if (hosts.length === 0 || !hosts.every((h) => /^[^\s/@]+:\d+$/.test(h)))
      throw new UsageError('--backend etcd://: needs host:port[,host:port…]');
    const { etcdBackend } = await optional<{ etcdBackend: (o: object) => LockBackend }>('../backends/etcd/index.js', 'the etcd backend');
    const mod = await optional<{ Etcd3: new (o: object) => { close(): void } }>('etcd3', 'the etcd backend needs etcd3, which');
    const client = new mod.Etcd3({ hosts: hosts.map((h) => `http://${h}`), dialTimeout: 5_000 });
    return { backend: etcdBackend({ client }), close: () => Promise.resolve(client.close()) };
  }
  if (url === 'memory:') throw new UsageError('memory: lives inside one process, so it cannot coordinate commands');
  throw new UsageError(
    `--backend: "${redact(url)}" is not a backend URL (file:[DIR], redis://…, rediss://…, redlock:redis://a,redis://b,redis://c, postgres://…, etcd://host:port[,host:port…])`,
  );
}
