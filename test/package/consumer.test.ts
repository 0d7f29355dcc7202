// Builds and packs the package, installs the tarball into a throw-away project, and uses it from ESM,
// from CommonJS, and from TypeScript under node16, nodenext and bundler resolution: the ways users load it.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const root = resolve(import.meta.dirname, '../..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
let project = '';
let tarball = '';
/** The packed tarball's folder, kept for every describe below. */
const packed = mkdtempSync(join(tmpdir(), 'locksmith-packed-'));
after(() => rmSync(packed, { recursive: true, force: true }));

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the built package', { timeout: 180_000 }, () => {
  before(() => {
    // npm test builds first (pretest); --ignore-scripts keeps pack from rebuilding under other tests.
    if (!existsSync(join(root, 'dist/esm/index.js'))) run(process.execPath, ['scripts/build.mjs'], root);
    project = mkdtempSync(join(tmpdir(), 'locksmith-consumer-'));
    tarball = join(
      packed,
      run(npm, ['pack', '--silent', '--ignore-scripts', '--pack-destination', packed], root).trim().split('\n').pop()!,
    );
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], project);
    cpSync(join(import.meta.dirname, 'fixtures'), project, { recursive: true });
  });
  after(() => rmSync(project, { recursive: true, force: true }));

  test('the tarball holds what a user needs and nothing else', () => {
    const files = run('tar', ['-tzf', tarball], root)
      .trim()
      .split('\n')
      .map((f) => f.replace(/^package\//, ''));
    const needed = [
      /^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/,
      /^dist\/(esm|cjs)\/.+\.(js|d\.ts)$/, // the build: no source maps (they would point at sources not shipped)
      /^dist\/cjs\/package\.json$/,
      /^native\/[a-z]+\.[ch]$/, // the file backend's addon, for platforms with no prebuilt binary
      /^binding\.gyp$/,
      /^prebuilds\/[a-z0-9-]+\/[a-z.]+\.node$/,
      /^scripts\/(install-native|node-gyp)\.mjs$/,
    ];
    const extra = files.filter((f) => !needed.some((re) => re.test(f)));
    assert.deepEqual(extra, [], 'files a user does not need (tests, benches, examples, TypeScript sources, maps)');
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, unknown>;
      bin: Record<string, string>;
    };
    const leaves = (v: unknown): string[] => (typeof v === 'string' ? [v] : Object.values(v as object).flatMap(leaves));
    const targets = [...leaves(pkg.exports), ...Object.values(pkg.bin)];
    for (const target of targets) assert.ok(files.includes(target.replace(/^\.\//, '')), `${target} is in the tarball`);
    assert.ok(targets.length > 20, `${targets.length} export targets checked`);
  });

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
        run(
          process.execPath,
          [
            tsc,
            '--noEmit',
            '--strict',
            '--skipLibCheck',
            'false',
            '--target',
            'es2022',
            '--lib',
            'es2022,esnext.disposable',
            '--typeRoots',
            join(root, 'node_modules/@types'),
            '--types',
            'node',
            '--module',
            module,
            '--moduleResolution',
            resolution,
            '--ignoreDeprecations',
            '5.0',
            file,
          ],
          project,
        );
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        assert.fail(`tsc failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }
    });
  }
});

// linux-x64 ships a prebuilt binary of the file backend's addon (prebuilds/, loaded by node-gyp-build):
// an install that cannot compile, or runs no scripts at all, still gets a working file backend.
describe('the file backend installs on linux-x64 without building', { timeout: 180_000 }, () => {
  const npmCli = join(dirname(dirname(process.execPath)), 'lib/node_modules/npm/bin/npm-cli.js');
  const expected = (format: string): Record<string, string> => ({
    format,
    fence: 'bigint',
    code: 'ERR_LOCK_TIMEOUT',
    file: 'bigint',
    postgres: 'function',
  });

  function consumer(args: string[], env: NodeJS.ProcessEnv): string {
    const dir = mkdtempSync(join(tmpdir(), 'locksmith-consumer-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    execFileSync(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', '--prefer-offline', ...args, tarball], {
      cwd: dir,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cpSync(join(import.meta.dirname, 'fixtures'), dir, { recursive: true });
    return dir;
  }

  function check(dir: string, env: NodeJS.ProcessEnv): void {
    assert.equal(existsSync(join(dir, 'node_modules/fencelock/build')), false, 'nothing was compiled');
    for (const [file, format] of [
      ['esm.mjs', 'esm'],
      ['cjs.cjs', 'cjs'],
    ] as const) {
      const out = execFileSync(process.execPath, [file], { cwd: dir, env, encoding: 'utf8' });
      assert.deepEqual(JSON.parse(out), expected(format));
    }
  }

  test('with no compiler, make or python3 on PATH', (t) => {
    if (`${process.platform}-${process.arch}` !== 'linux-x64') return t.skip('the prebuilt binary is for linux-x64');
    if (!existsSync(npmCli)) return t.skip(`no npm next to this node (${npmCli})`);
    // A PATH with node and sh alone (npm runs scripts with sh): the install script can run, a build cannot.
    const bin = mkdtempSync(join(tmpdir(), 'locksmith-nocc-'));
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync('/bin/sh', join(bin, 'sh'));
    const env = { ...process.env, PATH: bin, npm_config_node_gyp: '' };
    assert.notEqual(
      spawnSync('/bin/sh', ['-c', 'command -v cc || command -v gcc || command -v make || command -v python3'], { env }).status,
      0,
      'no build tools',
    );
    const dir = consumer([], env);
    try {
      check(dir, env);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(bin, { recursive: true, force: true });
    }
  });

  test('with install scripts disabled (--ignore-scripts)', (t) => {
    if (`${process.platform}-${process.arch}` !== 'linux-x64') return t.skip('the prebuilt binary is for linux-x64');
    if (!existsSync(npmCli)) return t.skip(`no npm next to this node (${npmCli})`);
    const dir = consumer(['--ignore-scripts'], process.env);
    try {
      check(dir, process.env);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
