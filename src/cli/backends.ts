// Backend URLs for the CLI. Each backend module and client library is imported only when its scheme
// is used, so the file backend (the default) needs no client library and no server.

import type { LockBackend } from '../backend.js';
import { UsageError } from './args.js';

export interface OpenBackend {
  backend: LockBackend;
  /** Closes the clients the CLI created for the backend (the backend never closes a caller's client). */
  close: () => Promise<void>;
}

/** Imports a module by a computed name, so the build does not require optional packages or backends. */
async function optional<T>(specifier: string, what: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new UsageError(`${what} is not available: install it (${specifier.startsWith('.') ? 'a newer locksmith' : `npm install ${specifier}`})`);
    }
    throw error;
  }
}

interface RedisClient {
  connect(): Promise<unknown>;
  quit(): Promise<unknown>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}
type RedisCtor = new (url: string, options: object) => RedisClient;

async function redisClient(url: string): Promise<RedisClient> {
  const mod = await optional<{ default: RedisCtor }>('ioredis', 'the redis backend needs ioredis, which');
  // A command line fails fast on an unreachable server instead of retrying forever.
  const client = new mod.default(url, { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: 5_000, retryStrategy: (n: number) => (n > 3 ? null : 200) });
  // Connection errors reach the command that needed the connection; ioredis would also print them.
  let last: unknown;
  client.on('error', (error) => (last = error));
  try {
    await client.connect(); // an unreachable server fails here, with its reason, not on a later command
  } catch (error) {
    throw last instanceof Error ? last : error; // ioredis only says "Connection is closed."
  }
  return client;
}

export async function backendFor(url: string): Promise<OpenBackend> {
  const none = (): Promise<void> => Promise.resolve();
  if (url.startsWith('file:')) {
    const { fileBackend } = await import('../backends/file/index.js');
    const dir = url.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    return { backend: fileBackend(dir ? { dir } : {}), close: none };
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const { redisBackend } = await optional<{ redisBackend: (o: object) => LockBackend }>('../backends/redis/index.js', 'the redis backend');
    const client = await redisClient(url);
    return { backend: redisBackend({ client }), close: async () => void (await client.quit()) };
  }
  if (url.startsWith('redlock:')) {
    const urls = url.slice('redlock:'.length).split(',').filter(Boolean);
    if (urls.length < 3 || !urls.every((u) => u.startsWith('redis://') || u.startsWith('rediss://'))) {
      throw new UsageError('--backend redlock: needs at least three redis:// URLs, comma-separated');
    }
    const { redlockBackend } = await optional<{ redlockBackend: (o: object) => LockBackend }>('../backends/redlock/index.js', 'the redlock backend');
    const clients = await Promise.all(urls.map(redisClient));
    return { backend: redlockBackend({ clients }), close: async () => void (await Promise.all(clients.map((c) => c.quit()))) };
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { postgresBackend } = await optional<{ postgresBackend: (o: object) => LockBackend }>('../backends/postgres/index.js', 'the postgres backend');
    const pg = await optional<{ default: { Pool: new (o: object) => { end(): Promise<void>; on(e: 'error', l: () => void): unknown } } }>('pg', 'the postgres backend needs pg, which');
    const pool = new pg.default.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5_000 });
    // An idle connection the server ends emits on the pool; the pool then drops it.
    pool.on('error', () => undefined);
    return { backend: postgresBackend({ pool }), close: () => pool.end() };
  }
  if (url.startsWith('etcd://')) {
    const hosts = url.slice('etcd://'.length).split(',').filter(Boolean);
    if (hosts.length === 0 || !hosts.every((h) => /^[^\s/@]+:\d+$/.test(h))) throw new UsageError('--backend etcd://: needs host:port[,host:port…]');
    const { etcdBackend } = await optional<{ etcdBackend: (o: object) => LockBackend }>('../backends/etcd/index.js', 'the etcd backend');
    const mod = await optional<{ Etcd3: new (o: object) => { close(): void } }>('etcd3', 'the etcd backend needs etcd3, which');
    const client = new mod.Etcd3({ hosts: hosts.map((h) => `http://${h}`), dialTimeout: 5_000 });
    return { backend: etcdBackend({ client }), close: () => Promise.resolve(client.close()) };
  }
  if (url === 'memory:') throw new UsageError('memory: lives inside one process, so it cannot coordinate commands');
  throw new UsageError(`--backend: "${url}" is not a backend URL (file:[DIR], redis://…, rediss://…, redlock:redis://a,redis://b,redis://c, postgres://…, etcd://host:port[,host:port…])`);
}
