import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileBackend } from '../../src/backends/file/index.js';
import { conformance } from './suite.js';

const dir = mkdtempSync(join(tmpdir(), 'locksmith-conformance-'));
conformance({
  name: 'file',
  backend: () => fileBackend({ dir }),
  after: async () => rmSync(dir, { recursive: true, force: true }),
});
