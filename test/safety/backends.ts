// How a client process builds its backend from a plain, serialisable spec. A backend that runs in
// real client processes adds one entry here and a system in systems.ts that passes the spec.

import { Redis } from 'ioredis';
import pg from 'pg';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { fileBackend } from '../../src/backends/file/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { redlockBackend } from '../../src/backends/redlock/index.js';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { Etcd3 } from 'etcd3';
import type { LockBackend } from '../../src/index.js';
import { faultHandling } from '../support/etcd-client.js';

/**
 * What the systems pass: `{ kind: 'file', dir }`, `{ kind: 'redis', port, commandTimeout }`,
 * `{ kind: 'redlock', ports, nodeTimeout }`, `{ kind: 'postgres', port }`,
 * `{ kind: 'etcd', ports, leaseTtl, commandTimeout }`.
 */
export type BackendSpec = { kind: string; [option: string]: unknown };

type Opener = (spec: BackendSpec) => LockBackend | Promise<LockBackend>;

/**
 * A client that notices a dead server quickly and keeps trying to reach it: the faults kill and
 * pause servers, and a client that backed off for seconds would turn a short outage into a long one.
 * One retry per command: a command queued while the server is down fails soon instead of running
 * much later (a late command is harmless, the scripts check the owner, but it holds a lease nobody
 * uses until its ttl).
 */
function connect(port: number): Redis {
  // maxLoadingRetryTime: a client that reconnects while a restarted server still loads its
  // append-only file would otherwise wait a whole second before it looks again.
  const client = new Redis(port, '127.0.0.1', { retryStrategy: () => 50, maxRetriesPerRequest: 1, maxLoadingRetryTime: 50 });
  // Connection errors are the faults under test; the backend reports failed calls itself.
  client.on('error', () => undefined);
  return client;
}

/** The backend never closes the clients it was given; the process must, or it would not exit. */
function closing(backend: LockBackend, clients: readonly Redis[]): LockBackend {
  return {
    ...backend,
    async close() {
      await backend.close();
      for (const c of clients) c.disconnect();
    },
  };
}

const openers = new Map<string, Opener>([
  ['file', (spec) => fileBackend({ dir: String(spec.dir) })],
  [
    'redis',
    (spec) => {
      const client = connect(Number(spec.port));
      return closing(redisBackend({ client, commandTimeout: Number(spec.commandTimeout) }), [client]);
    },
  ],
  [
    'postgres',
    (spec) => {
      // A short connect timeout: a client must notice a server that is down, not queue behind it.
      const pool = new pg.Pool({
        host: '127.0.0.1',
        port: Number(spec.port),
        user: 'postgres',
        database: 'postgres',
        max: 6,
        connectionTimeoutMillis: 1_000,
      });
      pool.on('error', () => undefined);
      const backend = postgresBackend({ pool, connectTimeout: 1_000 });
      return { ...backend, close: () => backend.close().then(() => pool.end()) };
    },
  ],
  [
    'etcd',
    (spec) => {
      const client = new Etcd3({
        hosts: (spec.ports as number[]).map((port) => `http://127.0.0.1:${port}`),
        // HTTP/2 pings find a member that stopped answering (SIGSTOP, black hole), so the watch
        // stream moves to another member; and no circuit breaker keeps a healed member shunned for
        // etcd3's default 5 s (each call has its own deadline; the core retries); a call that could
        // not reach its member goes to the next, as etcd3's default does.
        grpcOptions: {
          'grpc.keepalive_time_ms': 500,
          'grpc.keepalive_timeout_ms': 500,
          'grpc.keepalive_permit_without_calls': 1,
          // gRPC waits 1 s before it reconnects to a member that went away, and backs off from there:
          // a member restarted after a majority loss would be ignored for seconds.
          'grpc.initial_reconnect_backoff_ms': 100,
          'grpc.max_reconnect_backoff_ms': 1_000,
        },
        faultHandling,
      });
      const backend = etcdBackend({ client, leaseTtl: Number(spec.leaseTtl), commandTimeout: Number(spec.commandTimeout) });
      return { ...backend, close: () => backend.close().finally(() => client.close()) };
    },
  ],
  [
    'redlock',
    (spec) => {
      const clients = (spec.ports as number[]).map((port) => connect(port));
      return closing(redlockBackend({ clients, nodeTimeout: Number(spec.nodeTimeout) }), clients);
    },
  ],
]);

export function registerBackend(kind: string, open: Opener): void {
  openers.set(kind, open);
}

export async function openBackend(spec: BackendSpec): Promise<LockBackend> {
  const open = openers.get(spec.kind);
  if (!open) throw new Error(`no client-side opener for backend "${spec.kind}" (register one in test/safety/backends.ts)`);
  return open(spec);
}
