// The CLI as a script or a hostile environment meets it: secrets, signals, the command's lifetime,
// terminal escapes, the election it shares with the library, and whichever Redis client is installed.

import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { fileBackend } from '../../src/backends/file/index.js';
import { redisBackend } from '../../src/backends/redis/index.js';
import { Locksmith } from '../../src/index.js';
import { RedisNode } from '../support/redis.js';
import { alive, cli, cliWith, ensureBuilt, root } from './spawn.js';
import { until } from '../support/until.js';

const dir = mkdtempSync(join(tmpdir(), 'locksmith-cli-hard-'));
const backend = `file:${dir}`;
let redis: RedisNode;

before(async () => {
  ensureBuilt();
  redis = await RedisNode.start();
});
after(async () => {
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A command that prints its pid, then waits to be ended (the pid is the command itself, not a shell). */
const PID_THEN_WAIT = ['node', '-e', 'console.log("pid=" + process.pid); setInterval(() => {}, 1000)'];
const pidOf = (out: string): number => Number(/pid=(\d+)/.exec(out)![1]);

describe('CLI: version, exit codes, secrets', () => {
  test('--version prints the package version', async () => {
    const r = cli('--version');
    assert.equal(await r.code, 0);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    assert.equal(r.out().trim(), pkg.version);
  });

  test('a backend failure is exit 75 on every backend and subcommand', async () => {
    for (const url of ['redis://127.0.0.1:1', 'postgres://postgres@127.0.0.1:1/none']) {
      for (const args of [
        ['status', 'x'],
        ['run', 'x', '--wait', '1s', '--', 'true'],
      ]) {
        const r = cli(...args.slice(0, 2), '--backend', url, ...args.slice(2));
        assert.equal(await r.code, 75, `${args[0]} ${url}: ${r.err()}`);
        assert.match(r.err(), /^locksmith: x could not be (read|taken): .*ECONNREFUSED/);
      }
    }
  });

  test('a database that does not exist is refused before any lock, and no command runs', async () => {
    const marker = join(dir, 'ran-on-bad-db');
    const r = cli('run', 'x', '--backend', `${redis.url}/99999`, '--', 'touch', marker);
    assert.equal(await r.code, 75, r.err());
    assert.match(r.err(), /DB index/);
    assert.equal(existsSync(marker), false);
    const probe = new Redis(redis.port, '127.0.0.1');
    try {
      assert.equal(await probe.dbsize(), 0, 'no lock key was written');
    } finally {
      probe.disconnect();
    }
  });

  test('a TLS handshake that cannot succeed fails promptly and says why', async () => {
    const started = performance.now();
    const r = cli('run', 'x', '--backend', `rediss://${redis.url.slice('redis://'.length)}`, '--', 'true');
    assert.equal(await r.code, 75);
    assert.match(r.err(), /TLS/);
    assert.ok(performance.now() - started < 10_000, `took ${Math.round(performance.now() - started)} ms`);
  });

  test('no password is ever printed; LOCKSMITH_PASSWORD stands in for one; LOCKSMITH_* stay private', async () => {
    const admin = new Redis(redis.port, '127.0.0.1');
    await admin.config('SET', 'requirepass', 'hunter2-secret');
    try {
      const printed: string[] = [];
      for (const url of [
        `gopher://u:hunter2-secret@h/`,
        `redis://u:hunter2-secret@127.0.0.1:1/0`,
        `redis://:hunter2-secret@127.0.0.1:1/x`,
      ]) {
        const r = cli('run', 'x', '--backend', url, '--', 'true');
        await r.code;
        printed.push(r.out() + r.err());
      }
      const denied = cli('run', 'x', '--backend', redis.url, '--', 'true');
      assert.equal(await denied.code, 75);
      printed.push(denied.err());
      for (const text of printed) assert.doesNotMatch(text, /hunter2/);
      const env = { ...process.env, LOCKSMITH_BACKEND: redis.url, LOCKSMITH_PASSWORD: 'hunter2-secret' };
      const ok = cliWith({ env }, 'run', 'pw', '--', 'sh', '-c', 'env | grep -c "^LOCKSMITH_" || true');
      assert.equal(await ok.code, 0, ok.err());
      assert.equal(ok.out().trim(), '0');
    } finally {
      await admin.config('SET', 'requirepass', '');
      admin.disconnect();
    }
  });
});

describe('CLI: the command never outlives the lock', () => {
  test('a CLI ended by a catchable signal (SIGUSR2, SIGALRM) ends its command first and frees the lock', async () => {
    for (const signal of ['SIGUSR2', 'SIGALRM'] as const) {
      const r = cli('run', `sig-${signal}`, '--backend', backend, '--', ...PID_THEN_WAIT);
      await r.waitFor('pid=');
      const pid = pidOf(r.out());
      r.kill(signal);
      await r.code;
      assert.equal(alive(pid), false, `${signal}: the command outlived the CLI`);
      const next = cli('run', `sig-${signal}`, '--backend', backend, '--wait', '0', '--', 'true');
      assert.equal(await next.code, 0, next.err());
    }
  });

  test(
    'a CLI killed with SIGKILL takes its command with it (Linux: parent-death signal)',
    { skip: process.platform !== 'linux' },
    async () => {
      const r = cli('run', 'sigkill', '--backend', backend, '--', ...PID_THEN_WAIT);
      await r.waitFor('pid=');
      const pid = pidOf(r.out());
      r.kill('SIGKILL');
      await r.code;
      await until(() => !alive(pid));
    },
  );

  test('a signal sent to the whole process group (Ctrl-C) reaches the command once', async () => {
    const count =
      'let n = 0; process.on("SIGINT", () => { n++; setTimeout(() => { console.log("sigints=" + n); process.exit(0); }, 300); }); console.log("ready"); setInterval(() => {}, 1000)';
    const r = cliWith({ detached: true }, 'run', 'group', '--backend', backend, '--', 'node', '-e', count);
    await r.waitFor('ready');
    process.kill(-r.child.pid!, 'SIGINT');
    assert.equal(await r.code, 0, r.err());
    assert.match(r.out(), /sigints=1\n/);
  });
});

describe('CLI: what it prints and whom it contends with', () => {
  test('status escapes control characters in names and owners', async () => {
    const name = 'esc\u001b[2Jname';
    const locks = new Locksmith(fileBackend({ dir }));
    const lock = await locks.acquire(name, { owner: 'own\u009b31mer' });
    try {
      const r = cli('status', name, '--backend', backend);
      assert.equal(await r.code, 0, r.err());
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(r.out(), /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
      assert.match(r.out(), /esc\\x1b\[2Jname: held/);
      assert.match(r.out(), /owner own\\x9b31mer/);
      const json = cli('status', name, '--backend', backend, '--json');
      await json.code;
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(json.out(), /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
      assert.equal((JSON.parse(json.out()) as { holders: { owner: string }[] }).holders[0]?.owner, 'own\u009b31mer');
    } finally {
      await lock.release();
      await locks.close();
    }
  });

  test('`locksmith elect NAME` and locks.election(NAME) are one election', async () => {
    const client = new Redis(redis.port, '127.0.0.1');
    const locks = new Locksmith(redisBackend({ client }));
    const election = locks.election('shared', { value: 'library' });
    await election.campaign();
    const marker = join(dir, 'cli-led');
    const r = cli(
      'elect',
      'shared',
      '--backend',
      redis.url,
      '--value',
      'cli-node',
      '--',
      'sh',
      '-c',
      `touch ${marker}; echo led; sleep 0.5`,
    );
    try {
      await delay(300); // the CLI is campaigning now: it must not run while the library leads
      assert.equal(existsSync(marker), false, 'the CLI ran while the library was leader');
      await election.resign();
      await r.waitFor('led');
      assert.equal((await election.leader())?.value, 'cli-node');
      assert.equal(await r.code, 0, r.err());
    } finally {
      r.kill('SIGTERM');
      await locks.close();
      client.disconnect();
    }
  });

  test('works with node-redis when ioredis is not installed, and says what to install when neither is', async () => {
    const pkg = mkdtempSync(join(tmpdir(), 'locksmith-cli-pkg-'));
    try {
      cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
      cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
      const script = join(pkg, 'dist/esm/cli/main.js');
      const none = cliWith({ script }, 'status', 'x', '--backend', redis.url);
      assert.equal(await none.code, 2);
      assert.match(none.err(), /npm install ioredis, or npm install redis/);
      mkdirSync(join(pkg, 'node_modules'));
      symlinkSync(join(root, 'node_modules/redis'), join(pkg, 'node_modules/redis'));
      const r = cliWith({ script }, 'run', 'nr', '--backend', redis.url, '--fence-env', 'F', '--', 'sh', '-c', 'echo "fence=$F"');
      assert.equal(await r.code, 0, r.err());
      assert.match(r.out(), /^fence=\d+\n$/);
    } finally {
      rmSync(pkg, { recursive: true, force: true });
    }
  });
});
