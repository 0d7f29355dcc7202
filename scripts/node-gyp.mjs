// Runs node-gyp for the file backend's addon: npm's own copy, else one on PATH, and
// against the headers of the Node that runs us when they are installed, rather than downloading them.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Runs `node-gyp rebuild` in `cwd`; the spawn result (status null and .error when it could not start). */
export function rebuild(cwd, env = process.env, stdio = 'inherit') {
  const prefix = dirname(dirname(process.execPath));
  // npm names its copy when it runs us; outside npm, the copy npm ships next to this Node.
  const gyp = [env.npm_config_node_gyp, join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')].find(
    (p) => p && existsSync(p),
  );
  const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  if (!env.npm_config_nodedir && existsSync(join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
  return spawnSync(cmd, args, { cwd, env, stdio });
}
