// Runs every program in examples/ as a user would (the package imported by its name, servers named
// by REDIS_URL and DATABASE_URL), against a Redis this test starts and a throw-away database.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { userEnvironment, type UserEnv } from '../support/user-env.js';

const root = resolve(import.meta.dirname, '../..');
const dir = join(root, 'examples');
const programs = readdirSync(dir).filter((f) => f.endsWith('.ts') || f.endsWith('.sh'));

let user: UserEnv;
let env: NodeJS.ProcessEnv;

before(async () => {
  if (!existsSync(join(root, 'dist/esm/index.js'))) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root });
  user = await userEnvironment(root);
  env = user.env;
});
after(() => user?.close());

describe('examples', () => {
  test('there are examples to run', () => assert.ok(programs.length >= 5, programs.join(', ')));
  for (const program of programs) {
    test(program, () => {
      const [cmd, args] = program.endsWith('.sh')
        ? ['sh', [join(dir, program)]]
        : [process.execPath, ['--unhandled-rejections=strict', '--import', 'tsx', join(dir, program)]];
      let out: string;
      try {
        out = execFileSync(cmd, args, { cwd: root, env, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string; message: string };
        assert.fail(`${program} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
      assert.ok(out.trim().length > 0, 'the example printed what it did');
    });
  }
});
