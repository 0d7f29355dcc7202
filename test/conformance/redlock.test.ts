// The conformance suite on Redlock over five independent redis-server nodes (exclusive locks only:
// the shared-lease tests skip themselves on a backend without them).
import { Redis } from 'ioredis';
import { redlockBackend } from '../../src/backends/redlock/index.js';
import { RedisNode, stopAll } from '../support/redis.js';
import { conformance } from './suite.js';

let nodes: RedisNode[];
const clients: Redis[] = [];

conformance({
  name: 'redlock (5 nodes)',
  before: async () => {
    nodes = await Promise.all([0, 1, 2, 3, 4].map(() => RedisNode.start()));
  },
  backend: () => {
    const set = nodes.map((n) => new Redis(n.port, '127.0.0.1'));
    clients.push(...set);
    return redlockBackend({ clients: set, nodeTimeout: 200 });
  },
  after: async () => {
    for (const c of clients.splice(0)) c.disconnect();
    await stopAll();
  },
});
