// The backends the recipe tests run on. Each make() returns a new backend instance over shared state.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { fileBackend } from '../../src/backends/file/index.js';
import { MemoryStore, memoryBackend } from '../../src/backends/memory/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { redlockBackend } from '../../src/backends/redlock/index.js';
import type { LockBackend } from '../../src/index.js';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { RedisNode } from '../support/redis.js';

export interface RecipeTarget {
  name: string;
  make: () => LockBackend | Promise<LockBackend>;
  setup?: () => Promise<void>;
  teardown?: () => Promise<void>;
}

const store = new MemoryStore();
const dir = mkdtempSync(join(tmpdir(), 'locksmith-recipes-'));
let node: RedisNode | undefined;
let quorum: RedisNode[] = [];
const clients: Redis[] = [];
let etcd: EtcdCluster | undefined;

export const targets: RecipeTarget[] = [
  { name: 'memory', make: () => memoryBackend({ store }) },
  { name: 'file', make: () => fileBackend({ dir }) },
  {
    name: 'redis',
    setup: async () => {
      node = await RedisNode.start();
    },
    make: () => {
      const client = new Redis(node!.port, '127.0.0.1');
      clients.push(client);
      return redisBackend({ client });
    },
    teardown: async () => {
      for (const c of clients.splice(0)) c.disconnect();
      await node?.stop();
    },
  },
  {
    // Exclusive locks only: the pool (which needs a semaphore) skips itself here.
    name: 'redlock',
    setup: async () => {
      quorum = await Promise.all([0, 1, 2].map(() => RedisNode.start()));
    },
    make: () => {
      const set = quorum.map((n) => new Redis(n.port, '127.0.0.1'));
      clients.push(...set);
      return redlockBackend({ clients: set, nodeTimeout: 200 });
    },
    teardown: async () => {
      for (const c of clients.splice(0)) c.disconnect();
      await Promise.all(quorum.map((n) => n.stop()));
    },
  },
  {
    name: 'etcd',
    setup: async () => {
      etcd = await EtcdCluster.start();
    },
    make: () => {
      const client = etcd!.client();
      const backend = etcdBackend({ client, leaseTtl: 30_000 });
      return { ...backend, close: () => backend.close().finally(() => client.close()) };
    },
    teardown: async () => {
      await etcd?.stop();
    },
  },
];
