// The conformance suite on a real three-master Redis Cluster started here, through both clients.
import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { redisBackend } from '../../src/backends/redis/index.js';
import { startCluster, stopAll, type RedisNode } from '../support/redis.js';
import { conformance } from './suite.js';

let nodes: RedisNode[];
const clients: { quit(): Promise<unknown> }[] = [];
const done = async (): Promise<void> => {
  await Promise.all(clients.splice(0).map((c) => c.quit().catch(() => undefined)));
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
  name: 'redis cluster (node-redis)',
  backend: async () => {
    const client = createCluster({ rootNodes: nodes.map((n) => ({ url: n.url })) });
    await client.connect();
    clients.push(client);
    return redisBackend({ client });
  },
  after: async () => {
    await done();
    await stopAll();
  },
});
