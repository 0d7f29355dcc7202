// The environment a user's program runs in, for tests that run docs blocks and examples as programs:
// REDIS_URL (a redis-server started here), DATABASE_URL (a throw-away database), LOCK_DIR (a temp
// directory) and the built `locksmith` command on PATH. On request also REDLOCK_URLS (three more
// independent redis-servers, comma-separated) and a 3-member etcd cluster: ETCD_ENDPOINTS (its
// members' http://host:port, comma-separated, for the etcd3 client) and ETCD_HOSTS (host:port,
// comma-separated, for the CLI's etcd:// URL).

import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdCluster } from './etcd.js';
import { createDatabase } from './postgres.js';
import { RedisNode } from './redis.js';

export interface UserEnv {
  env: NodeJS.ProcessEnv;
  close: () => Promise<void>;
}

export interface UserEnvOptions {
  /** Start three redis-servers for Redlock (REDLOCK_URLS). */
  redlock?: boolean;
  /** Start a 3-member etcd cluster (ETCD_ENDPOINTS, ETCD_HOSTS). */
  etcd?: boolean;
}

export async function userEnvironment(root: string, options: UserEnvOptions = {}): Promise<UserEnv> {
  // What has started so far is stopped again when a later step fails: a server left running keeps the
  // test process (and so the test run) alive.
  const started: Array<() => Promise<void>> = [];
  const close = async (): Promise<void> => {
    for (const stop of started.splice(0).reverse()) await stop().catch(() => undefined);
  };
  try {
    const redis = await RedisNode.start();
    started.push(() => redis.stop());
    const quorum: RedisNode[] = [];
    for (let i = 0; options.redlock && i < 3; i++) {
      const node = await RedisNode.start();
      quorum.push(node);
      started.push(() => node.stop());
    }
    const etcd = options.etcd ? await EtcdCluster.start() : undefined;
    if (etcd) started.push(() => etcd.stop());
    const db = await createDatabase();
    started.push(() => db.drop());
    const bin = mkdtempSync(join(tmpdir(), 'locksmith-user-bin-'));
    const locks = mkdtempSync(join(tmpdir(), 'locksmith-user-locks-'));
    started.push(async () => {
      for (const d of [bin, locks]) rmSync(d, { recursive: true, force: true });
    });
    symlinkSync(join(root, 'dist/esm/cli/main.js'), join(bin, 'locksmith'));
    const c = db.config;
    const databaseUrl =
      c.connectionString ?? `postgres://${c.user ?? 'postgres'}@${c.host ?? '127.0.0.1'}:${c.port ?? 5432}/${c.database ?? ''}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      REDIS_URL: redis.url,
      DATABASE_URL: databaseUrl,
      LOCK_DIR: locks,
      PATH: `${bin}:${process.env.PATH ?? ''}`,
    };
    if (quorum.length > 0) env.REDLOCK_URLS = quorum.map((n) => n.url).join(',');
    if (etcd) {
      env.ETCD_ENDPOINTS = etcd.endpoints.map((e) => `http://${e}`).join(',');
      env.ETCD_HOSTS = etcd.endpoints.join(',');
    }
    return { env, close };
  } catch (error) {
    await close();
    throw error;
  }
}
