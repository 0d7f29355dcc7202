// Builds the file backend's native addon at install time. A failed build must not fail the install:
// everything else works without it, and fileBackend() then says exactly what is missing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

if (process.platform !== 'linux') {
  console.warn('locksmith: the file backend needs Linux (open file description locks); skipping its native addon');
  process.exit(0);
}
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp && existsSync(gyp) ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
// Build against the headers of the Node that runs us when they are installed, rather than downloading.
const prefix = dirname(dirname(process.execPath));
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
const result = spawnSync(cmd, args, { stdio: 'inherit' });
if (result.status !== 0) {
  console.warn(`locksmith: could not build the file backend's native addon (${result.error?.message ?? `exit ${result.status}`}); other backends are unaffected`);
}
process.exit(0);
