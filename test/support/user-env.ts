// The environment a user's program runs in, for tests that run docs blocks and examples as programs:
// REDIS_URL (a redis-server started here), DATABASE_URL (a throw-away database), LOCK_DIR (a temp
// directory) and the built `locksmith` command on PATH.

import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from './postgres.js';
import { RedisNode } from './redis.js';

export interface UserEnv {
  env: NodeJS.ProcessEnv;
  close: () => Promise<void>;
}

export async function userEnvironment(root: string): Promise<UserEnv> {
  const redis = await RedisNode.start();
  const db = await createDatabase();
  const bin = mkdtempSync(join(tmpdir(), 'locksmith-user-bin-'));
  const locks = mkdtempSync(join(tmpdir(), 'locksmith-user-locks-'));
  symlinkSync(join(root, 'dist/esm/cli/main.js'), join(bin, 'locksmith'));
  const c = db.config;
  const databaseUrl =
    c.connectionString ?? `postgres://${c.user ?? 'postgres'}@${c.host ?? '127.0.0.1'}:${c.port ?? 5432}/${c.database ?? ''}`;
  return {
    env: { ...process.env, REDIS_URL: redis.url, DATABASE_URL: databaseUrl, LOCK_DIR: locks, PATH: `${bin}:${process.env.PATH ?? ''}` },
    close: async () => {
      await redis.stop();
      await db.drop();
      for (const d of [bin, locks]) rmSync(d, { recursive: true, force: true });
    },
  };
}
