// A Redis connection for the CLI, through whichever client is installed: ioredis first, else
// node-redis. Either fails fast: a command line must not sit retrying an unreachable or misconfigured
// server (or a TLS handshake that will never succeed) while the user waits.

import { isIP } from 'node:net';
import { UsageError } from './args.js';

export interface RedisTarget {
  host: string;
  port: number;
  tls: boolean;
  db: number;
  username: string | undefined;
  password: string | undefined;
}

export interface RedisConnection {
  /** The client object, for redisBackend(). */
  raw: unknown;
  close: () => Promise<void>;
}

/** A server that accepts the connection but never completes the handshake (TLS to a plain port) fails after this. */
const CONNECT_TIMEOUT_MS = 3_000;

/** SNI takes host names only (an IP address there is deprecated, and warned about). */
const serverName = (host: string): { servername?: string } => (isIP(host) ? {} : { servername: host });

/** The reason a first connection failed, said so that a user knows what to fix. */
function failure(t: RedisTarget, error: unknown): Error {
  const e = error instanceof Error ? error : new Error(String(error));
  if (t.tls && /ETIMEDOUT|timed? ?out/i.test(e.message)) {
    return new Error(
      `no TLS handshake with ${t.host}:${t.port} within ${CONNECT_TIMEOUT_MS / 1000}s (does the server speak TLS? use redis:// if not)`,
      { cause: e },
    );
  }
  return e;
}

interface IoRedisLike {
  connect(): Promise<unknown>;
  select(db: number): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}
type IoRedisCtor = new (options: object) => IoRedisLike;

interface NodeRedisLike {
  connect(): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): Promise<unknown>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}
type NodeRedisModule = { createClient(options: object): NodeRedisLike };

async function tryImport<T>(specifier: string): Promise<T | undefined> {
  try {
    return (await import(specifier)) as T;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

async function viaIoredis(Ctor: IoRedisCtor, t: RedisTarget): Promise<RedisConnection> {
  let connected = false;
  const client = new Ctor({
    host: t.host,
    port: t.port,
    db: t.db,
    ...(t.username !== undefined ? { username: t.username } : {}),
    ...(t.password !== undefined ? { password: t.password } : {}),
    ...(t.tls ? { tls: serverName(t.host) } : {}),
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 2,
    // No retry before the first connection (it fails now, with its reason); a few after it.
    retryStrategy: (n: number) => (connected && n <= 3 ? 200 : null),
  });
  // Connection errors reach the command that needed the connection; ioredis would also print them.
  let last: unknown;
  client.on('error', (error) => (last = error));
  try {
    await client.connect();
    // ioredis selects `db` on connect but only emits a failure, then carries on in database 0:
    // selecting again here makes a database that does not exist fail now, before any lock.
    await client.select(t.db);
  } catch (error) {
    client.disconnect();
    throw failure(t, last instanceof Error ? last : error); // ioredis alone only says "Connection is closed."
  }
  connected = true;
  return { raw: client, close: async () => void (await client.quit().catch(() => client.disconnect())) };
}

async function viaNodeRedis(mod: NodeRedisModule, t: RedisTarget): Promise<RedisConnection> {
  let connected = false;
  const client = mod.createClient({
    socket: {
      host: t.host,
      port: t.port,
      connectTimeout: CONNECT_TIMEOUT_MS,
      ...(t.tls ? { tls: true, ...serverName(t.host) } : {}),
      reconnectStrategy: (n: number) => (connected && n <= 3 ? 200 : false),
    },
    database: t.db,
    ...(t.username !== undefined ? { username: t.username } : {}),
    ...(t.password !== undefined ? { password: t.password } : {}),
  });
  let last: unknown;
  client.on('error', (error) => (last = error));
  try {
    await client.connect(); // AUTH and SELECT are part of node-redis's connect
  } catch (error) {
    await client.disconnect().catch(() => undefined);
    throw failure(t, last instanceof Error ? last : error);
  }
  connected = true;
  return { raw: client, close: async () => void (await client.quit().catch(() => client.disconnect())) };
}

export async function redisClient(target: RedisTarget): Promise<RedisConnection> {
  const io = await tryImport<{ default: IoRedisCtor }>('ioredis');
  if (io) return viaIoredis(io.default, target);
  const nr = await tryImport<NodeRedisModule>('redis');
  if (nr) return viaNodeRedis(nr, target);
  throw new UsageError('the redis backend needs a Redis client: install one (npm install ioredis, or npm install redis)');
}
