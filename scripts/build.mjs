// Builds ESM (dist/esm) and CJS (dist/cjs) from one source with tsc. The CJS folder gets its own
// package.json so Node and TypeScript treat its .js and .d.ts files as CommonJS.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync, chmodSync, existsSync } from 'node:fs';

const tsc = ['node_modules/typescript/bin/tsc'];
rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, [...tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
execFileSync(process.execPath, [...tsc, '-p', 'tsconfig.cjs.json'], { stdio: 'inherit' });
writeFileSync('dist/cjs/package.json', JSON.stringify({ type: 'commonjs' }) + '\n');
// See src/backends/file/locate.ts: CommonJS finds its own directory through __dirname.
writeFileSync(
  'dist/cjs/backends/file/locate.js',
  '"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.here = __dirname;\n',
);
for (const bin of ['dist/esm/cli/main.js']) if (existsSync(bin)) chmodSync(bin, 0o755);
