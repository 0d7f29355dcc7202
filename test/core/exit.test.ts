// Once a program closes its Locksmith and its client, nothing of ours keeps Node running: on every
// backend, a child process that used each primitive ends by itself (it never calls process.exit).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { EtcdCluster } from '../support/etcd.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';
import { RedisNode, startCluster, stopAll } from '../support/redis.js';

const run = promisify(execFile);
const child = join(import.meta.dirname, 'exit-child.ts');

/** Resolves with the child's stdout once it has exited on its own; it is killed after `ms`. */
async function ranToEnd(kind: string, target: string, ms = 30_000): Promise<string> {
  const started = Date.now();
  try {
    const { stdout } = await run(
      process.execPath,
      ['--unhandled-rejections=strict', '--import', 'tsx', child, kind, target, `exit:${kind}`],
      {
        timeout: ms,
        killSignal: 'SIGKILL',
      },
    );
    return stdout;
  } catch (error) {
    const e = error as { killed?: boolean; stdout?: string; stderr?: string };
    if (e.killed) assert.fail(`the ${kind} child was still running after ${Date.now() - started} ms (stdout: ${e.stdout ?? ''})`);
    throw error;
  }
}

describe('a closed Locksmith keeps nothing running', () => {
  let redis: RedisNode;
  let cluster: RedisNode[];
  let db: TestDatabase;
  let etcd: EtcdCluster;
  const dir = mkdtempSync(join(tmpdir(), 'locksmith-exit-'));

  before(async () => {
    [redis, cluster, db, etcd] = await Promise.all([RedisNode.start(), startCluster(), createDatabase(), EtcdCluster.start()]);
  });
  after(async () => {
    await Promise.all([stopAll(), db?.drop(), etcd?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const targets: Array<[string, () => string]> = [
    ['memory', () => ''],
    ['file', () => dir],
    ['redis', () => String(redis.port)],
    ['cluster', () => cluster.map((n) => n.port).join(',')],
    ['postgres', () => JSON.stringify(db.config)],
    ['etcd', () => etcd.endpoints.join(',')],
  ];
  for (const [kind, target] of targets) {
    test(kind, async () => assert.equal(await ranToEnd(kind, target()), 'done'));
  }
});
