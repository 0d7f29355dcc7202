// Every backend configuration the behaviour suites run on: the conformance suite (suite.ts) and the
// recipe suite (test/recipes/suite.ts) take the same targets. A group shares one server (or store):
// its first target starts it in before(), its last stops it in after(). Each backend() is a new
// instance (its own connection), as another process would have.
//
// Hooks, so cross-backend properties are tested once, in the suites:
//   forget()              the server loses its data (restarted empty, files deleted, a sequence reset)
//   crashHolder(key, ttl) a holder takes `key` for `ttl` ms and dies without releasing (its connection
//                         dropped, or its process killed)

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { Cluster as Cluster6, Redis as Redis6 } from 'ioredis-v6';
import { createClient, createCluster } from 'redis';
import { createClient as createClientV5, createCluster as createClusterV5 } from 'redis-v5';
import { fileBackend } from '../../src/backends/file/index.js';
import { MemoryStore, memoryBackend } from '../../src/backends/memory/index.js';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { redlockBackend } from '../../src/backends/redlock/index.js';
import { Locksmith, type LockBackend } from '../../src/index.js';
import type { Etcd3 } from 'etcd3';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';
import { RedisNode, startCluster, stopAll } from '../support/redis.js';

export interface Target {
  name: string;
  /** A new backend instance (its own connection) over the shared state. */
  backend: () => LockBackend | Promise<LockBackend>;
  before?: () => Promise<void>;
  after?: () => Promise<void>;
  forget?: () => Promise<void>;
  crashHolder?: (key: string, ttl: number) => Promise<void>;
}

/**
 * Takes `key` through `backend` and never releases or renews it; `die` then ends its connection, also
 * when the hold failed (a client left connected to a server the target stops reconnects for ever and
 * keeps the test process alive).
 */
async function holdAndDie(backend: LockBackend, key: string, ttl: number, die: () => unknown = () => undefined): Promise<void> {
  const locks = new Locksmith(backend);
  try {
    await locks.acquire(key, { ttl, autoRenew: false, wait: 0 });
  } finally {
    await die();
  }
}

// ---- memory ------------------------------------------------------------------------------------

function memoryTarget(name: string, polling: boolean): Target {
  let store = new MemoryStore();
  const make = (): LockBackend => {
    const backend = memoryBackend({ store });
    // Its wake-up hidden: proves the backoff-and-poll path that backends without notifications rely on.
    return polling ? { ...backend, waitForChange: undefined, capabilities: { ...backend.capabilities, wake: false } } : backend;
  };
  return {
    name,
    backend: make,
    // A restarted process: a fresh store.
    forget: async () => void (store = new MemoryStore()),
    crashHolder: (key, ttl) => holdAndDie(make(), key, ttl),
  };
}

export const memory: Target[] = [memoryTarget('memory', false), memoryTarget('memory, polling (no wake-up)', true)];

// ---- file --------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'locksmith-targets-'));

export const file: Target[] = [
  {
    name: 'file',
    backend: () => fileBackend({ dir }),
    after: async () => rmSync(dir, { recursive: true, force: true }),
    forget: async () => {
      for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
    },
    // A holder process killed outright: only the kernel closing its files releases anything.
    crashHolder: async (key) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../file/child.ts'), 'hold', dir, key], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => chunk.toString().startsWith('held') && resolve());
        child.on('exit', (code) => reject(new Error(`the holder exited (${code}) before holding`)));
      });
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  },
];

// ---- redis -------------------------------------------------------------------------------------

type Client = { quit(): Promise<unknown>; destroy?: () => unknown; disconnect?: () => unknown };

/** Ends clients outright: a cluster's quit() in node-redis 4 and 5 can leave sockets reconnecting. */
function clientList(): { add: <C extends Client>(c: C) => C; end: () => Promise<void> } {
  const clients: Client[] = [];
  const end = async (c: Client): Promise<unknown> => (c.destroy ? c.destroy() : c.disconnect ? c.disconnect() : c.quit());
  return {
    add: (c) => (clients.push(c), c),
    end: async () => void (await Promise.all(clients.splice(0).map((c) => end(c).catch(() => undefined)))),
  };
}

/**
 * An ioredis client once connected: like node-redis's connect(), so a test's first command (which
 * the backend bounds by the lease's ttl, as short as 100 ms here) does not also pay for connecting.
 */
async function ready<C extends { status: string; once(event: 'ready', listener: () => void): unknown }>(client: C): Promise<C> {
  if (client.status !== 'ready') await new Promise<void>((resolve) => client.once('ready', resolve));
  return client;
}

let node: RedisNode;
const single = clientList();
const flushSingle = async (): Promise<void> => void (await node.cli('FLUSHALL'));
/** A holder on its own ioredis connection, which is then dropped. */
const redisCrash = (prefix?: string) => async (key: string, ttl: number) => {
  const client = await ready(new Redis(node.port, '127.0.0.1'));
  await holdAndDie(redisBackend({ client, ...(prefix ? { prefix } : {}) }), key, ttl, () => client.disconnect());
};

export const redis: Target[] = [
  {
    name: 'redis (ioredis)',
    before: async () => {
      node = await RedisNode.start();
    },
    backend: async () => redisBackend({ client: single.add(await ready(new Redis(node.port, '127.0.0.1'))) }),
    after: single.end,
    forget: flushSingle,
    crashHolder: redisCrash(),
  },
  {
    name: 'redis (ioredis, fair)',
    backend: async () => redisBackend({ client: single.add(await ready(new Redis(node.port, '127.0.0.1'))), prefix: 'fair:', fair: true }),
    forget: flushSingle,
    crashHolder: redisCrash('fair:'),
  },
  {
    name: 'redis (ioredis 6, RESP3)',
    backend: async () => redisBackend({ client: single.add(await ready(new Redis6(node.port, '127.0.0.1'))), prefix: 'io6:' }),
    forget: flushSingle,
    crashHolder: redisCrash('io6:'),
  },
  {
    name: 'redis (node-redis 4)',
    backend: async () => redisBackend({ client: single.add(await createClient({ url: node.url }).connect()), prefix: 'nr:' }),
    forget: flushSingle,
    crashHolder: redisCrash('nr:'),
  },
  {
    name: 'redis (node-redis 5)',
    backend: async () => redisBackend({ client: single.add(await createClientV5({ url: node.url }).connect()), prefix: 'nr5:' }),
    after: async () => {
      await single.end();
      await stopAll();
    },
    forget: flushSingle,
    crashHolder: redisCrash('nr5:'),
  },
];

// ---- redis cluster -----------------------------------------------------------------------------

let masters: RedisNode[];
const clustered = clientList();
const flushCluster = async (): Promise<void> => void (await Promise.all(masters.map((n) => n.cli('FLUSHALL'))));
const clusterCrash = (prefix?: string) => async (key: string, ttl: number) => {
  const client = await ready(new Cluster(masters.map((n) => ({ host: '127.0.0.1', port: n.port }))));
  await holdAndDie(redisBackend({ client, ...(prefix ? { prefix } : {}) }), key, ttl, () => client.disconnect());
};

export const redisCluster: Target[] = [
  {
    name: 'redis cluster (ioredis)',
    before: async () => {
      masters = await startCluster();
    },
    backend: async () =>
      redisBackend({ client: clustered.add(await ready(new Cluster(masters.map((n) => ({ host: '127.0.0.1', port: n.port }))))) }),
    after: clustered.end,
    forget: flushCluster,
    crashHolder: clusterCrash(),
  },
  {
    name: 'redis cluster (ioredis 6, RESP3)',
    backend: async () =>
      redisBackend({
        client: clustered.add(await ready(new Cluster6(masters.map((n) => ({ host: '127.0.0.1', port: n.port }))))),
        prefix: 'io6:',
      }),
    forget: flushCluster,
    crashHolder: clusterCrash('io6:'),
  },
  {
    name: 'redis cluster (node-redis 4)',
    backend: async () => {
      const client = clustered.add(createCluster({ rootNodes: masters.map((n) => ({ url: n.url })) }));
      await client.connect();
      return redisBackend({ client });
    },
    forget: flushCluster,
    crashHolder: clusterCrash(),
  },
  {
    name: 'redis cluster (node-redis 5)',
    backend: async () => {
      const client = clustered.add(createClusterV5({ rootNodes: masters.map((n) => ({ url: n.url })) }));
      await client.connect();
      return redisBackend({ client, prefix: 'nr5:' });
    },
    after: async () => {
      await clustered.end();
      await stopAll();
    },
    forget: flushCluster,
    crashHolder: clusterCrash('nr5:'),
  },
];

// ---- redlock -----------------------------------------------------------------------------------

let quorum: RedisNode[];
const voters = clientList();
const quorumClients = (): Promise<Redis[]> => Promise.all(quorum.map((n) => ready(voters.add(new Redis(n.port, '127.0.0.1')))));

export const redlock: Target[] = [
  {
    // Exclusive locks only: the shared-lease tests skip themselves.
    name: 'redlock (5 nodes)',
    before: async () => {
      quorum = await Promise.all([0, 1, 2, 3, 4].map(() => RedisNode.start()));
    },
    backend: async () => redlockBackend({ clients: await quorumClients(), nodeTimeout: 200 }),
    after: async () => {
      await voters.end();
      await stopAll();
    },
    forget: async () => void (await Promise.all(quorum.map((n) => n.cli('FLUSHALL')))),
    crashHolder: async (key, ttl) => {
      const clients = await Promise.all(quorum.map((n) => ready(new Redis(n.port, '127.0.0.1'))));
      await holdAndDie(redlockBackend({ clients, nodeTimeout: 200 }), key, ttl, () => clients.forEach((c) => c.disconnect()));
    },
  },
];

// ---- postgres ----------------------------------------------------------------------------------

let db: TestDatabase;

export const postgres: Target[] = [
  {
    name: 'postgres',
    before: async () => {
      db = await createDatabase();
    },
    backend: () => {
      // Each backend's pool ends with it: the server's max_connections is shared with everyone.
      const pool = db.pool({ max: 20 });
      const backend = postgresBackend({ pool });
      return { ...backend, close: () => backend.close().then(() => pool.end()) };
    },
    after: async () => {
      await db.drop();
    },
    // An unlogged sequence is reset to its start by a crash of the server: do exactly that.
    forget: async () => {
      const { rows } = await db.query(`SELECT c.oid::regclass::text AS name FROM pg_class c WHERE c.relkind = 'S'`);
      for (const { name } of rows as { name: string }[]) await db.query(`ALTER SEQUENCE ${name} RESTART`);
    },
    // The holder's sessions are terminated by the server, as when its process dies.
    crashHolder: async (key, ttl) => {
      const pool = db.pool({ max: 5, application_name: 'locksmith-crash' });
      await holdAndDie(postgresBackend({ pool }), key, ttl, () =>
        db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locksmith-crash'`),
      );
    },
  },
];

// ---- etcd --------------------------------------------------------------------------------------

let etcdCluster: EtcdCluster;
const etcdClients = new Set<Etcd3>();

// No forget(): etcd's fences are revisions, which an empty restart resets (etcd keeps its data on
// disk; losing it is losing the cluster). No crashHolder(): a dead holder's keys go with its session
// lease, whose ttl is seconds, not the suite's hundreds of ms (test/etcd covers it).
export const etcd: Target[] = [
  {
    name: 'etcd (3 members)',
    before: async () => {
      etcdCluster = await EtcdCluster.start();
    },
    backend: () => {
      // Each backend() is a new etcd3 client (its own connections, watch stream and session lease).
      const client = etcdCluster.client();
      etcdClients.add(client);
      const backend = etcdBackend({ client, leaseTtl: 30_000 });
      return {
        ...backend,
        close: async () => {
          await backend.close();
          client.close();
          etcdClients.delete(client);
        },
      };
    },
    after: async () => {
      for (const c of etcdClients) c.close();
      etcdClients.clear();
      await etcdCluster.stop();
    },
  },
];
