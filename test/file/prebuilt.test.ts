// The prebuilt binary ships in the package and serves every install on linux-x64 that has no
// compiler: it must be built from the native/ sources as they are now, or users run old code.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
// @ts-expect-error: a plain .mjs build script, without types
import { nativeSourceHash } from '../../scripts/native-source.mjs';

const root = join(import.meta.dirname, '../..');

test('the prebuilt binaries were made from native/ and binding.gyp as they are now', () => {
  const recorded = readFileSync(join(root, 'scripts/prebuilt-source.sha256'), 'utf8').trim();
  assert.equal(
    recorded,
    (nativeSourceHash as (root: string) => string)(root),
    'native/ or binding.gyp changed since the prebuilt binaries were made: run `node scripts/build-native.mjs --prebuild` and commit prebuilds/ and scripts/prebuilt-source.sha256',
  );
});

test('the linux-x64 prebuilt binary loads and is the OFD build', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
  const addon = createRequire(import.meta.url)(join(root, 'prebuilds/linux-x64/locksmith.glibc.node')) as { kind: string };
  assert.equal(addon.kind, 'ofd');
});
