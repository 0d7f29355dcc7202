// The conformance suite on a single redis-server, through ioredis 5 and 6 and node-redis 4 and 5. Each backend() is a new
// client connection, as another process would have.
import { Redis } from 'ioredis';
import { Redis as Redis6 } from 'ioredis-v6';
import { createClient } from 'redis';
import { createClient as createClientV5 } from 'redis-v5';
import { redisBackend } from '../../src/backends/redis/index.js';
import { RedisNode, stopAll } from '../support/redis.js';
import { conformance } from './suite.js';

let node: RedisNode;
// A cluster's quit() in node-redis 4 and 5 can leave its node sockets reconnecting for ever (which
// keeps the test process alive): end them outright, with destroy() (5) or disconnect() (4; ioredis).
const clients: { quit(): Promise<unknown>; destroy?: () => unknown; disconnect?: () => unknown }[] = [];
const done = async (): Promise<void> => {
  const end = async (c: (typeof clients)[number]): Promise<unknown> => (c.destroy ? c.destroy() : c.disconnect ? c.disconnect() : c.quit());
  await Promise.all(clients.splice(0).map((c) => end(c).catch(() => undefined)));
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
  name: 'redis (ioredis 6, RESP3)',
  backend: () => {
    const client = new Redis6(node.port, '127.0.0.1');
    clients.push(client);
    return redisBackend({ client, prefix: 'io6:' });
  },
});

conformance({
  name: 'redis (node-redis 4)',
  backend: async () => {
    const client = createClient({ url: node.url });
    await client.connect();
    clients.push(client);
    return redisBackend({ client, prefix: 'nr:' });
  },
});

conformance({
  name: 'redis (node-redis 5)',
  backend: async () => {
    const client = createClientV5({ url: node.url });
    await client.connect();
    clients.push(client);
    return redisBackend({ client, prefix: 'nr5:' });
  },
  after: async () => {
    await done();
    await stopAll();
  },
});
