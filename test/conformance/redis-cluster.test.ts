// The conformance suite on a real three-master Redis Cluster started here, through ioredis 5 and 6
// and node-redis 4 and 5.
import { Cluster } from 'ioredis';
import { Cluster as Cluster6 } from 'ioredis-v6';
import { createCluster } from 'redis';
import { createCluster as createClusterV5 } from 'redis-v5';
import { redisBackend } from '../../src/backends/redis/index.js';
import { startCluster, stopAll, type RedisNode } from '../support/redis.js';
import { conformance } from './suite.js';

let nodes: RedisNode[];
// A cluster's quit() in node-redis 4 and 5 can leave its node sockets reconnecting for ever (which
// keeps the test process alive): end them outright, with destroy() (5) or disconnect() (4; ioredis).
const clients: { quit(): Promise<unknown>; destroy?: () => unknown; disconnect?: () => unknown }[] = [];
const done = async (): Promise<void> => {
  const end = async (c: (typeof clients)[number]): Promise<unknown> => (c.destroy ? c.destroy() : c.disconnect ? c.disconnect() : c.quit());
  await Promise.all(clients.splice(0).map((c) => end(c).catch(() => undefined)));
};

/** An ioredis Cluster connects lazily; tests with a 100 ms ttl must not pay for its first slot map. */
function ready<C extends { status: string; once(event: 'ready', listener: () => void): unknown }>(client: C): Promise<C> {
  return client.status === 'ready' ? Promise.resolve(client) : new Promise((resolve) => client.once('ready', () => resolve(client)));
}

conformance({
  name: 'redis cluster (ioredis)',
  before: async () => {
    nodes = await startCluster();
  },
  backend: async () => {
    const client = new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
    clients.push(client);
    return redisBackend({ client: await ready(client) });
  },
  after: done,
});

conformance({
  name: 'redis cluster (ioredis 6, RESP3)',
  backend: async () => {
    const client = new Cluster6(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
    clients.push(client);
    return redisBackend({ client: await ready(client), prefix: 'io6:' });
  },
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
