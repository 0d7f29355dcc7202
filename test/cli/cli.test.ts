// The built `locksmith` command, run as real child processes on the file backend, and on real
// Redis, Redlock and PostgreSQL servers.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileNameFor } from '../../src/backends/file/index.js';
import { createDatabase } from '../support/postgres.js';
import { RedisNode } from '../support/redis.js';
import { cli, ensureBuilt } from './spawn.js';

const dir = mkdtempSync(join(tmpdir(), 'locksmith-cli-'));
const backend = `file:${dir}`;

before(ensureBuilt);
after(() => rmSync(dir, { recursive: true, force: true }));

/** Two runs serialize with rising fences; status sees a holder; a busy name exits 75; elect leads. */
async function runStatusElect(url: string, tag: string): Promise<void> {
  const log = join(dir, `${tag}-serial.log`);
  const script = `echo start >> ${log}; sleep 0.2; echo end >> ${log}`;
  const runs = [0, 1].map(() => cli('run', `${tag}-serial`, '--backend', url, '--fence-env', 'F', '--', 'sh', '-c', `${script}; echo $F`));
  assert.deepEqual(await Promise.all(runs.map((r) => r.code)), [0, 0], runs.map((r) => r.err()).join(''));
  assert.equal(readFileSync(log, 'utf8'), 'start\nend\n'.repeat(2));
  const fences = runs.map((r) => BigInt(r.out().trim())).sort((a, b) => (a < b ? -1 : 1));
  assert.ok(fences[1]! > fences[0]!);
  const holder = cli('run', `${tag}-held`, '--backend', url, '--', 'sh', '-c', 'echo ready; sleep 30');
  await holder.waitFor('ready');
  const status = cli('status', `${tag}-held`, '--backend', url, '--json');
  assert.equal(await status.code, 0, status.err());
  assert.equal((JSON.parse(status.out()) as { held: boolean }).held, true);
  const busy = cli('run', `${tag}-held`, '--backend', url, '--wait', '100ms', '--', 'true');
  assert.equal(await busy.code, 75);
  holder.kill('SIGTERM');
  await holder.code;
  const leader = cli('elect', `${tag}-leader`, '--backend', url, '--value', 'n1', '--', 'sh', '-c', 'echo leading');
  assert.equal(await leader.code, 0, leader.err());
  assert.match(leader.out(), /leading/);
}

describe('locksmith CLI', () => {
  test('run passes the exit code through and the fence through --fence-env', async () => {
    const r = cli('run', 'codes', '--backend', backend, '--fence-env', 'FENCE', '--', 'sh', '-c', 'echo "fence=$FENCE"; exit 7');
    assert.equal(await r.code, 7);
    assert.match(r.out(), /^fence=\d+\n$/);
  });

  test('two runs on one name serialize', async () => {
    const log = join(dir, 'serial.log');
    const script = `echo start >> ${log}; sleep 0.3; echo end >> ${log}`;
    const runs = [0, 1, 2].map(() => cli('run', 'serial', '--backend', backend, '--wait', '10s', '--', 'sh', '-c', script));
    assert.deepEqual(await Promise.all(runs.map((r) => r.code)), [0, 0, 0]);
    assert.equal(readFileSync(log, 'utf8'), 'start\nend\n'.repeat(3));
  });

  test('a lock that cannot be taken exits 75 with one line', async () => {
    const holder = cli('run', 'busy', '--backend', backend, '--', 'sh', '-c', 'echo ready; sleep 30');
    await holder.waitFor('ready');
    const second = cli('run', 'busy', '--backend', backend, '--wait', '200ms', '--', 'true');
    assert.equal(await second.code, 75);
    assert.match(second.err(), /^locksmith: busy is held by another owner \(waited 0\.\ds\)\n$/);
    holder.kill('SIGTERM');
    await holder.code;
  });

  test('SIGTERM to the CLI reaches the command and frees the lock', async () => {
    const r = cli(
      'run',
      'term',
      '--backend',
      backend,
      '--',
      'sh',
      '-c',
      'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.05; done',
    );
    await r.waitFor('ready');
    r.kill('SIGTERM');
    assert.equal(await r.code, 42);
    assert.match(r.out(), /got-term/);
    const status = cli('status', 'term', '--backend', backend, '--json');
    assert.equal(await status.code, 0);
    assert.equal((JSON.parse(status.out()) as { held: boolean }).held, false);
  });

  test('a lock lost while the command runs stops it and exits 76', async () => {
    const r = cli(
      'run',
      'lose',
      '--backend',
      backend,
      '--ttl',
      '1s',
      '--',
      'sh',
      '-c',
      'trap "echo stopped; exit 0" TERM; echo ready; while :; do sleep 0.05; done',
    );
    await r.waitFor('ready');
    unlinkSync(join(dir, fileNameFor('lose'))); // someone removes the lock file: the lease is gone
    assert.equal(await r.code, 76);
    assert.match(r.out(), /stopped/);
    assert.match(r.err(), /was lost while the command ran/);
  });

  test('status shows the holder, --json for machines', async () => {
    const holder = cli('run', 'shown', '--backend', backend, '--json', '--', 'sh', '-c', 'echo ready; sleep 30');
    await holder.waitFor('ready');
    const text = cli('status', 'shown', '--backend', backend);
    assert.equal(await text.code, 0);
    assert.match(text.out(), /^shown: held \(exclusive\) by 1 holder\n {2}owner \S+ {2}fence \d+ {2}expires in \d+\.\ds\n$/);
    const json = cli('status', 'shown', '--backend', backend, '--json');
    await json.code;
    const info = JSON.parse(json.out()) as { held: boolean; mode: string; holders: { fence: string }[] };
    assert.equal(info.held, true);
    assert.equal(info.mode, 'exclusive');
    const acquired = JSON.parse(holder.err().split('\n')[0]!) as { event: string; fence: string };
    assert.equal(acquired.event, 'acquired');
    assert.equal(info.holders[0]?.fence, acquired.fence);
    holder.kill('SIGTERM');
    await holder.code;
  });

  test('elect runs the command only while leader', async () => {
    const log = join(dir, 'elect.log');
    const script = (who: string): string => `echo ${who}-in >> ${log}; sleep 0.3; echo ${who}-out >> ${log}`;
    const a = cli('elect', 'leader', '--backend', backend, '--value', 'a', '--', 'sh', '-c', script('a'));
    const b = cli('elect', 'leader', '--backend', backend, '--value', 'b', '--', 'sh', '-c', script('b'));
    assert.deepEqual(await Promise.all([a.code, b.code]), [0, 0]);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    assert.equal(lines.length, 4);
    assert.equal(lines[0]!.slice(0, 1), lines[1]!.slice(0, 1), 'one leader at a time');
    assert.equal(lines[2]!.slice(0, 1), lines[3]!.slice(0, 1));
  });

  test('usage errors exit 2, before any backend is touched; a missing command exits 127', async () => {
    for (const args of [
      [],
      ['run', 'x'],
      ['run', 'x', '--', ''],
      ['run', 'a'.repeat(5_000), '--', 'true'],
      ['run', 'x', '--ttl', '500ms', '--', 'true'],
      ['run', 'x', '--backend', 'file://', '--', 'true'],
      ['run', 'x', '--backend', 'redis://127.0.0.1:1/abc', '--', 'true'],
      ['elect', 'x', '--backend', backend, '--value', 'a\u0001b', '--', 'true'],
      ['elect', 'x', '--backend', backend, '--value', 'v'.repeat(201), '--', 'true'],
      ['run', 'x', '--fence-env', 'PATH', '--', 'true'],
      ['run', 'x', '--fence-env', 'LD_PRELOAD', '--', 'true'],
      ['run', 'x', '--fence-env', 'NODE_OPTIONS', '--', 'true'],
      ['run', 'x', '--json=yes', '--', 'true'],
      ['run', '--', 'true'],
      ['run', 'x', '--ttl', '5 minutes', '--', 'true'],
      ['run', 'x', '--colour', 'red', '--', 'true'],
      ['status', 'x', '--wait', '1s'],
      ['frobnicate'],
      ['run', 'x', '--backend', 'gopher://x', '--', 'true'],
      ['run', 'x', '--fence-env', '1BAD', '--', 'true'],
    ]) {
      const r = cli(...args);
      assert.equal(await r.code, 2, args.join(' '));
      assert.match(r.err(), /usage:|locksmith: /);
    }
    const missing = cli('run', 'nope', '--backend', backend, '--', 'definitely-not-a-command-xyz');
    assert.equal(await missing.code, 127);
  });

  test('run, status and elect work against Redis with --backend redis://', async () => {
    const node = await RedisNode.start();
    try {
      await runStatusElect(`${node.url}/0`, 'redis');
    } finally {
      await node.stop();
    }
  });

  test('run, status and elect work against PostgreSQL with --backend postgres://', async () => {
    const db = await createDatabase();
    try {
      const c = db.config;
      const url =
        c.connectionString ??
        `postgres://${c.user ?? 'postgres'}${c.password ? `:${String(c.password)}` : ''}@${c.host ?? '127.0.0.1'}:${c.port ?? 5432}/${c.database ?? ''}`;
      await runStatusElect(url, 'pg');
    } finally {
      await db.drop();
    }
  });

  test('run works on Redlock with --backend redlock:redis://a,redis://b,redis://c', async () => {
    const nodes = await Promise.all([0, 1, 2].map(() => RedisNode.start()));
    try {
      const url = `redlock:${nodes.map((n) => n.url).join(',')}`;
      const r = cli('run', 'quorum', '--backend', url, '--fence-env', 'F', '--', 'sh', '-c', 'echo "fence=$F"');
      assert.equal(await r.code, 0, r.err());
      assert.match(r.out(), /^fence=\d+\n$/);
      const bad = cli('run', 'quorum', '--backend', `redlock:${nodes[0]!.url}`, '--', 'true');
      assert.equal(await bad.code, 2);
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  test('an unreachable server is exit 75 with one line, quickly', async () => {
    const t0 = performance.now();
    const r = cli('run', 'x', '--backend', 'redis://127.0.0.1:1', '--wait', '1s', '--', 'true');
    assert.equal(await r.code, 75);
    assert.match(r.err(), /^locksmith: x could not be taken: .*ECONNREFUSED.*\n$/);
    assert.ok(performance.now() - t0 < 15_000);
    const p = cli('run', 'x', '--backend', 'postgres://postgres@127.0.0.1:1/none', '--wait', '1s', '--', 'true');
    assert.equal(await p.code, 75);
    assert.match(p.err(), /^locksmith: x could not be taken: .*ECONNREFUSED.*\n$/);
  });
});
