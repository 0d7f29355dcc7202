// Runs every code block of README.md and the guides in docs/ (subfolders included) against the built
// package and real servers, so the documentation cannot drift from the code. A `ts` block runs as its
// own module (imports of the package resolve to this repository through its exports); an `sh` block
// runs in sh -e with the `locksmith` command on PATH. An `sh` block of `npm install` lines alone is
// checked, not run (it would fetch from the registry): every package it names must be this package or
// one of its peer dependencies. Blocks marked `text` (synopses, output, diagrams) are not run, and
// may hold no code.
//
// Blocks reach servers through the environment, as an application would (test/support/user-env.ts);
// Redlock's three servers and the etcd cluster are started only when a block names them.

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

const pages = [
  'README.md',
  ...(existsSync(docs) ? readdirSync(docs, { recursive: true, encoding: 'utf8' }) : [])
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`)
    .sort(),
];
const blocks = pages.flatMap((p) => blocksOf(p, readFileSync(join(root, p), 'utf8')));
const RUN = new Set(['ts', 'js', 'sh']);
const needs = (name: string): boolean => blocks.some((b) => RUN.has(b.lang) && b.code.includes(name));

/** Code that a `text` block must not hold: it would go stale unseen. */
const CODE = /^\s*(import |export |const |let |await |function |class |npm |npx |node )/m;

/** A block of `npm install` lines (and comments) only. */
const isInstall = (b: Block): boolean =>
  b.lang === 'sh' && b.code.split('\n').every((l) => l.trim() === '' || l.trim().startsWith('#') || /^npm (install|i) /.test(l.trim()));

/** The packages an install block names, without versions or flags. */
function installed(b: Block): string[] {
  return b.code
    .split('\n')
    .filter((l) => /^npm (install|i) /.test(l.trim()))
    .flatMap((l) => l.replace(/#.*/, '').trim().split(/\s+/).slice(2))
    .filter((w) => !w.startsWith('-'))
    .map((w) => w.replace(/(.)@.*$/, '$1'));
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; peerDependencies: Record<string, string> };

let user: UserEnv;
let env: NodeJS.ProcessEnv;

before(async () => {
  if (!existsSync(join(root, 'dist/esm/index.js'))) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root });
  mkdirSync(work, { recursive: true });
  user = await userEnvironment(root, { redlock: needs('REDLOCK_URLS'), etcd: needs('ETCD_ENDPOINTS') || needs('ETCD_HOSTS') });
  env = user.env;
});
after(async () => {
  await user?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('docs code blocks', () => {
  test('README and docs have blocks to run', () =>
    assert.ok(blocks.filter((b) => RUN.has(b.lang)).length >= 50, `${blocks.length} blocks`));
  test('every block is run or marked as text, and text holds no code', () => {
    for (const b of blocks) {
      assert.ok(RUN.has(b.lang) || b.lang === 'text', `${b.page}:${b.line}: a \`${b.lang || '(none)'}\` block: mark it ts, sh or text`);
      if (b.lang === 'text') assert.doesNotMatch(b.code, CODE, `${b.page}:${b.line}: code in a text block: mark it ts or sh`);
    }
  });
  blocks.forEach((b, i) => {
    if (!RUN.has(b.lang)) return;
    if (isInstall(b)) {
      test(`${b.page}:${b.line} (npm install)`, () => {
        const known = new Set([pkg.name, ...Object.keys(pkg.peerDependencies)]);
        assert.ok(installed(b).length > 0, 'names a package');
        for (const name of installed(b)) assert.ok(known.has(name), `${b.page}:${b.line}: ${name} is not ${pkg.name} or one of its peers`);
      });
      return;
    }
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
