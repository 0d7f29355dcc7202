// Builds the file backend's native addon for development and CI (an install uses a prebuilt binary
// when one loads, so a change to native/ needs one of these):
//   node scripts/build-native.mjs              from source, into build/Release
//   node scripts/build-native.mjs --flock      the portable flock(2) variant, into build/flock/build/Release (on
//                                             Linux too, so CI tests the path macOS and the BSDs use)
//   node scripts/build-native.mjs --prebuild   the prebuilt binary shipped in prebuilds/ (prebuildify)
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { nativeSourceHash } from './native-source.mjs';
import { rebuild } from './node-gyp.mjs';

const root = join(import.meta.dirname, '..');
const mode = process.argv[2];

if (mode === '--flock') {
  // A copy, so the default build in build/Release stays as it is.
  const work = mkdtempSync(join(tmpdir(), 'locksmith-flock-'));
  try {
    for (const p of ['binding.gyp', 'native']) cpSync(join(root, p), join(work, p), { recursive: true });
    const result = rebuild(work, { ...process.env, LOCKSMITH_LOCKS: 'flock' }, 'pipe');
    if (result.status !== 0)
      throw new Error(`the flock build failed (${result.error?.message ?? `exit ${result.status}`}):\n${String(result.stderr)}`);
    // Laid out as a package root, so node-gyp-build loads it when FENCELOCK_PREBUILD names it.
    mkdirSync(join(root, 'build/flock/build/Release'), { recursive: true });
    cpSync(join(work, 'build/Release/locksmith_file.node'), join(root, 'build/flock/build/Release/locksmith_file.node'));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
} else if (mode === '--prebuild') {
  // N-API: one binary serves every Node version; tagged with its libc so musl systems build their own.
  // prebuildify runs node-gyp from PATH: npm's copy, against this Node's installed headers (no download).
  const prefix = dirname(dirname(process.execPath));
  const env = {
    ...process.env,
    PATH: `${join(prefix, 'lib/node_modules/npm/bin/node-gyp-bin')}${delimiter}${process.env.PATH}`,
    npm_config_nodedir: prefix,
  };
  const args = [
    join(root, 'node_modules/prebuildify/bin.js'),
    '--napi',
    '--strip',
    '--tag-libc',
    '--target',
    `node@${process.versions.node}`,
  ];
  execFileSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env });
  // What the binaries were built from: test/file/prebuilt.test.ts fails when native/ has changed since.
  writeFileSync(join(root, 'scripts', 'prebuilt-source.sha256'), `${nativeSourceHash(root)}\n`);
} else if (mode === undefined) {
  // From source into build/Release (which node-gyp-build prefers to a prebuilt binary).
  const result = rebuild(root, process.env, 'pipe');
  if (result.status !== 0)
    throw new Error(`the build failed (${result.error?.message ?? `exit ${result.status}`}):\n${String(result.stderr)}`);
} else {
  console.error('usage: node scripts/build-native.mjs [--flock | --prebuild]');
  process.exit(2);
}
