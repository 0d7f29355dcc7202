// Builds and packs the package, installs the tarball into a throw-away project, and uses it from ESM,
// from CommonJS, and from TypeScript under node16, nodenext and bundler resolution: the ways users load it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const root = resolve(import.meta.dirname, '../..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
let project = '';

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the built package', { timeout: 180_000 }, () => {
  before(() => {
    // npm test builds first (pretest); --ignore-scripts keeps pack from rebuilding under other tests.
    if (!existsSync(join(root, 'dist/esm/index.js'))) run(process.execPath, ['scripts/build.mjs'], root);
    project = mkdtempSync(join(tmpdir(), 'locksmith-consumer-'));
    const tarball = run(npm, ['pack', '--silent', '--ignore-scripts', '--pack-destination', project], root).trim().split('\n').pop()!;
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    run(npm, ['install', '--no-audit', '--no-fund', '--offline', join(project, tarball)], project);
    cpSync(join(import.meta.dirname, 'fixtures'), project, { recursive: true });
  });
  after(() => rmSync(project, { recursive: true, force: true }));

  test('imports from ESM', () => {
    const out = JSON.parse(run(process.execPath, ['esm.mjs'], project)) as Record<string, string>;
    assert.deepEqual(out, { format: 'esm', fence: 'bigint', code: 'ERR_LOCK_TIMEOUT', file: 'bigint', postgres: 'function' });
  });

  test('requires from CommonJS', () => {
    const out = JSON.parse(run(process.execPath, ['cjs.cjs'], project)) as Record<string, string>;
    assert.deepEqual(out, { format: 'cjs', fence: 'bigint', code: 'ERR_LOCK_TIMEOUT', file: 'bigint', postgres: 'function' });
  });

  for (const [module, resolution, file] of [
    ['node16', 'node16', 'types.mts'],
    ['node16', 'node16', 'types.cts'],
    ['nodenext', 'nodenext', 'types.mts'],
    ['esnext', 'bundler', 'types.ts'],
    ['commonjs', 'node10', 'types.ts'],
  ] as const) {
    test(`types resolve with module ${module}, moduleResolution ${resolution} (${file})`, () => {
      if (file !== 'types.ts') cpSync(join(project, 'types.ts'), join(project, file));
      const tsc = join(root, 'node_modules/typescript/bin/tsc');
      try {
        run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--target', 'es2022', '--lib', 'es2022,esnext.disposable',
          '--typeRoots', join(root, 'node_modules/@types'), '--types', 'node', '--module', module, '--moduleResolution', resolution, '--ignoreDeprecations', '5.0', file], project);
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        assert.fail(`tsc failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    });
  }
});
