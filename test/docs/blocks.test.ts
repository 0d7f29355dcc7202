// Runs every code block of the guides in docs/ against the built package and real servers, so the
// documentation cannot drift from the code. A `ts` block runs as its own module (imports of the
// package resolve to this repository through its exports); an `sh` block runs in sh -e with the
// `locksmith` command on PATH. Blocks marked `text` (synopses, output) are not run.
//
// Blocks reach servers through the environment, as an application would (test/support/user-env.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { userEnvironment, type UserEnv } from '../support/user-env.js';

const root = resolve(import.meta.dirname, '../..');
const docs = join(root, 'docs');
const work = join(root, '.tmp', 'docs');

interface Block {
  page: string;
  line: number;
  lang: string;
  code: string;
}

/** Every fenced block of a page, with its language and where it starts (for the test's title). */
export function blocksOf(page: string, text: string): Block[] {
  const out: Block[] = [];
  const re = /^```([a-z]*)[^\n]*\n([\s\S]*?)^```/gm;
  for (const m of text.matchAll(re)) {
    out.push({ page, line: text.slice(0, m.index).split('\n').length, lang: m[1]!, code: m[2]! });
  }
  return out;
}

const pages = existsSync(docs) ? readdirSync(docs).filter((f) => f.endsWith('.md')) : [];
const blocks = pages.flatMap((p) => blocksOf(`docs/${p}`, readFileSync(join(docs, p), 'utf8')));
const RUN = new Set(['ts', 'js', 'sh']);

let user: UserEnv;
let env: NodeJS.ProcessEnv;

before(async () => {
  if (!existsSync(join(root, 'dist/esm/index.js'))) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root });
  mkdirSync(work, { recursive: true });
  user = await userEnvironment(root);
  env = user.env;
});
after(async () => {
  await user?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('docs code blocks', () => {
  test('every block is run or marked as text', () => {
    for (const b of blocks)
      assert.ok(RUN.has(b.lang) || b.lang === 'text', `${b.page}:${b.line}: a \`${b.lang || '(none)'}\` block: mark it ts, sh or text`);
  });
  blocks.forEach((b, i) => {
    if (!RUN.has(b.lang)) return;
    test(`${b.page}:${b.line} (${b.lang})`, () => {
      const file = join(work, `block-${i}.${b.lang === 'sh' ? 'sh' : 'ts'}`);
      writeFileSync(file, b.code);
      const [cmd, args] =
        b.lang === 'sh' ? ['sh', ['-e', file]] : [process.execPath, ['--unhandled-rejections=strict', '--import', 'tsx', file]];
      try {
        execFileSync(cmd, args, { cwd: root, env, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string; message: string };
        assert.fail(`${b.page}:${b.line} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    });
  });
});
