// The conformance suite on a single redis-server, through both clients. Each backend() is a new
// client connection, as another process would have.
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { redisBackend } from '../../src/backends/redis/index.js';
import { RedisNode, stopAll } from '../support/redis.js';
import { conformance } from './suite.js';

let node: RedisNode;
const clients: { quit(): Promise<unknown> }[] = [];
const done = async (): Promise<void> => {
  await Promise.all(clients.splice(0).map((c) => c.quit().catch(() => undefined)));
};

conformance({
  name: 'redis (ioredis)',
  before: async () => {
    node = await RedisNode.start();
  },
  backend: () => {
    const client = new Redis(node.port, '127.0.0.1', { lazyConnect: false });
    clients.push(client);
    return redisBackend({ client });
  },
  after: done,
});

conformance({
  name: 'redis (ioredis, fair)',
  backend: () => {
    const client = new Redis(node.port, '127.0.0.1');
    clients.push(client);
    return redisBackend({ client, prefix: 'fair:', fair: true });
  },
});

conformance({
  name: 'redis (node-redis)',
  backend: async () => {
    const client = createClient({ url: node.url });
    await client.connect();
    clients.push(client);
    return redisBackend({ client, prefix: 'nr:' });
  },
  after: async () => {
    await done();
    await stopAll();
  },
});
