// Builds the file backend's native addon for development and CI:
//   node scripts/build-native.mjs --flock      the portable flock(2) variant, into build/flock/build/Release (on
//                                             Linux too, so CI tests the path macOS and the BSDs use)
//   node scripts/build-native.mjs --prebuild   the prebuilt binary shipped in prebuilds/ (prebuildify)
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rebuild } from './node-gyp.mjs';

const root = join(import.meta.dirname, '..');
const mode = process.argv[2];

if (mode === '--flock') {
  // A copy, so the default build in build/Release stays as it is.
  const work = mkdtempSync(join(tmpdir(), 'locksmith-flock-'));
  try {
    for (const p of ['binding.gyp', 'native']) cpSync(join(root, p), join(work, p), { recursive: true });
    const result = rebuild(work, { ...process.env, LOCKSMITH_LOCKS: 'flock' }, 'pipe');
    if (result.status !== 0) throw new Error(`the flock build failed (${result.error?.message ?? `exit ${result.status}`}):\n${String(result.stderr)}`);
    // Laid out as a package root, so node-gyp-build loads it when LOCKSMITH_PREBUILD names it.
    mkdirSync(join(root, 'build/flock/build/Release'), { recursive: true });
    cpSync(join(work, 'build/Release/locksmith_file.node'), join(root, 'build/flock/build/Release/locksmith_file.node'));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
} else if (mode === '--prebuild') {
  // N-API: one binary serves every Node version; tagged with its libc so musl systems build their own.
  execFileSync(process.execPath, [join(root, 'node_modules/prebuildify/bin.js'), '--napi', '--strip', '--tag-libc', '--target', `node@${process.versions.node}`], { cwd: root, stdio: 'inherit' });
} else {
  console.error('usage: node scripts/build-native.mjs --flock | --prebuild');
  process.exit(2);
}
