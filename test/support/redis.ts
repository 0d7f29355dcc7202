// Real redis-server processes for tests: each on a free port in its own temp dir, never the
// machine's own Redis. Nodes can be killed, paused (SIGSTOP) and restarted; three can form a Cluster.
// Each server runs under the guard of guard.ts, so none outlives the tests.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { signalGuarded, spawnGuarded, type Guarded } from './guard.js';

const run = promisify(execFile);

const all = new Set<RedisNode>();

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface NodeOptions {
  cluster?: boolean;
  /** Keep data across restarts (appendonly, fsync always). */
  persistent?: boolean;
}

export class RedisNode {
  readonly port: number;
  readonly dir: string;
  readonly options: NodeOptions;
  #server: Guarded | undefined;

  private constructor(port: number, options: NodeOptions) {
    this.port = port;
    this.options = options;
    this.dir = mkdtempSync(join(tmpdir(), `locksmith-redis-${port}-`));
  }

  static async start(options: NodeOptions = {}): Promise<RedisNode> {
    const node = new RedisNode(await freePort(), options);
    all.add(node);
    try {
      await node.restart();
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port and directory. */
  async restart(): Promise<void> {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--save',
      '',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ];
    args.push('--appendonly', this.options.persistent ? 'yes' : 'no');
    if (this.options.persistent) args.push('--appendfsync', 'always');
    if (this.options.cluster)
      args.push('--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000');
    this.#server = await spawnGuarded(['redis-server', ...args], `redis-server on ${this.port}`);
    const proc = this.#server.proc;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await this.cli('PING')).trim() === 'PONG') return;
      } catch {
        // not up yet
      }
      if (proc.exitCode !== null) throw new Error(`redis-server on ${this.port} exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not start`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-p', String(this.port), ...args], { timeout: 5_000 });
    return stdout;
  }

  /** kill -9: no chance to save anything. */
  async kill(): Promise<void> {
    const proc = this.#server?.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    this.#signal('SIGKILL');
    await exited;
  }

  pause(): void {
    this.#signal('SIGSTOP');
  }

  resume(): void {
    this.#signal('SIGCONT');
  }

  #signal(signal: NodeJS.Signals): void {
    signalGuarded(this.#server, signal);
  }

  async stop(): Promise<void> {
    await this.kill();
    all.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Three masters, no replicas, slots spread by redis-cli. */
export async function startCluster(): Promise<RedisNode[]> {
  const nodes = await Promise.all([0, 1, 2].map(() => RedisNode.start({ cluster: true })));
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    timeout: 30_000,
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    // Every node must agree on the whole slot map, or a client that learns it from a laggard gets
    // MOVED replies for a while.
    const states = await Promise.all(nodes.map((n) => n.cli('CLUSTER', 'INFO')));
    const maps = await Promise.all(
      nodes.map(async (n) =>
        (await n.cli('CLUSTER', 'SLOTS'))
          .split('\n')
          .filter((l) => /^\d+$/.test(l.trim()))
          .sort()
          .join(','),
      ),
    );
    const agreed = maps.every((m) => m === maps[0]) && (maps[0]?.length ?? 0) > 0;
    if (agreed && states.every((s) => s.includes('cluster_state:ok') && s.includes('cluster_known_nodes:3'))) return nodes;
    if (Date.now() > deadline) throw new Error('the cluster did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ioClients: Redis[] = [];

/**
 * An ioredis client of `node` that notices a dead server quickly and keeps trying (faults are under
 * test, so its connection errors are ignored); disconnectClients() ends them all.
 */
export function ioClient(node: RedisNode, options: RedisOptions = {}): Redis {
  const client = new Redis(node.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 50, ...options });
  client.on('error', () => undefined);
  ioClients.push(client);
  return client;
}

export function disconnectClients(): void {
  for (const c of ioClients.splice(0)) c.disconnect();
}

/** For after() hooks and for a process that exits early: no redis-server outlives the tests. */
export async function stopAll(): Promise<void> {
  await Promise.all([...all].map((n) => n.stop()));
}
process.on('exit', () => {
  for (const n of all) n.kill().catch(() => undefined);
});
