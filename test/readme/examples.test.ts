// Runs every README code block marked `ts example` as its own script against the built package, so
// the documentation cannot drift from the code.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const root = resolve(import.meta.dirname, '../..');
const work = join(root, '.tmp', 'readme');
const blocks = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/```ts example\n([\s\S]*?)```/g)].map((m) => m[1]!);

before(() => {
  if (!existsSync(join(root, 'dist/esm/index.js'))) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root });
  mkdirSync(work, { recursive: true });
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('README examples', () => {
  test('there are examples to run', () => assert.ok(blocks.length >= 4, `found ${blocks.length}`));
  blocks.forEach((code, i) => {
    const title =
      code
        .split('\n')
        .find((l) => /locks\.(pool|election|stampede)|@locks/.test(l))
        ?.trim() ?? `example ${i + 1}`;
    test(`example ${i + 1}: ${title}`, () => {
      // Inside the repository, so `import 'fencelock'` resolves to the package itself (its exports).
      const file = join(work, `example-${i + 1}.ts`);
      writeFileSync(file, code);
      const out = execFileSync(process.execPath, ['--unhandled-rejections=strict', '--import', 'tsx', file], {
        cwd: root,
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.ok(out.trim().length > 0, 'the example printed something');
    });
  });
});
