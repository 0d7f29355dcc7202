// The backend a test's child process opens from its command line: KIND file (TARGET a directory),
// redis (a port), cluster (ports, comma-separated), postgres (a JSON pg config) or etcd (host:port
// list, comma-separated), with what closes its client.
import { Etcd3 } from 'etcd3';
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import type { LockBackend } from '../../src/backend.js';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { fileBackend } from '../../src/backends/file/index.js';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';

export function childBackend(kind: string, target: string): { backend: LockBackend; close: () => Promise<void> } {
  if (kind === 'file') return { backend: fileBackend({ dir: target }), close: () => Promise.resolve() };
  if (kind === 'etcd') {
    const client = new Etcd3({ hosts: target.split(',').map((h) => `http://${h}`) });
    return { backend: etcdBackend({ client, leaseTtl: 30_000 }), close: async () => client.close() };
  }
  if (kind === 'postgres') {
    const pool = new pg.Pool({ ...(JSON.parse(target) as pg.PoolConfig), max: 4 });
    return { backend: postgresBackend({ pool }), close: () => pool.end() };
  }
  const client =
    kind === 'cluster'
      ? new Cluster(target.split(',').map((port) => ({ host: '127.0.0.1', port: Number(port) })))
      : new Redis(Number(target), '127.0.0.1');
  return { backend: redisBackend({ client }), close: async () => void client.disconnect() };
}
