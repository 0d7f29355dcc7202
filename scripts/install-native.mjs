// Install step for the file backend's native addon. A prebuilt binary (prebuilds/, loaded through
// node-gyp-build) needs no compiler; without one for this platform, build from source with node-gyp.
// A failed build must not fail the install: everything else works without the addon, and
// fileBackend() then says what is missing and what to do.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rebuild } from './node-gyp.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

if (process.platform === 'win32') {
  console.warn(
    'fencelock: the file backend does not run on Windows (use the memory, redis, redlock or postgres backend); skipping its native addon',
  );
  process.exit(0);
}
try {
  require('node-gyp-build')(root);
  process.exit(0); // a prebuilt binary (or an earlier build) loads: nothing to compile
} catch {
  // none for this platform: build below
}
const result = rebuild(root);
if (result.status !== 0) {
  console.warn(
    `fencelock: could not build the file backend's native addon (${result.error?.message ?? `exit ${result.status}`}); other backends are unaffected`,
  );
}
process.exit(0);
