// The conformance suite on a real three-master Redis Cluster started here, through ioredis and
// node-redis 4 and 5.
import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { createCluster as createClusterV5 } from 'redis-v5';
import { redisBackend } from '../../src/backends/redis/index.js';
import { startCluster, stopAll, type RedisNode } from '../support/redis.js';
import { conformance } from './suite.js';

let nodes: RedisNode[];
// node-redis 5 deprecates quit(), and a cluster's quit() can leave reconnection timers running.
const clients: { quit(): Promise<unknown>; close?: () => Promise<unknown> }[] = [];
const done = async (): Promise<void> => {
  await Promise.all(clients.splice(0).map((c) => (c.close ? c.close() : c.quit()).catch(() => undefined)));
};

conformance({
  name: 'redis cluster (ioredis)',
  before: async () => {
    nodes = await startCluster();
  },
  backend: () => {
    const client = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
    clients.push(client);
    return redisBackend({ client });
  },
  after: done,
});

conformance({
  name: 'redis cluster (node-redis 4)',
  backend: async () => {
    const client = createCluster({ rootNodes: nodes.map((n) => ({ url: n.url })) });
    await client.connect();
    clients.push(client);
    return redisBackend({ client });
  },
});

conformance({
  name: 'redis cluster (node-redis 5)',
  backend: async () => {
    const client = createClusterV5({ rootNodes: nodes.map((n) => ({ url: n.url })) });
    await client.connect();
    clients.push(client);
    return redisBackend({ client, prefix: 'nr5:' });
  },
  after: async () => {
    await done();
    await stopAll();
  },
});
