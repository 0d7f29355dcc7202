// The backends the recipe tests run on. Each make() returns a new backend instance over shared state.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileBackend } from '../../src/backends/file/index.js';
import { MemoryStore, memoryBackend } from '../../src/backends/memory/index.js';
import type { LockBackend } from '../../src/index.js';

export interface RecipeTarget {
  name: string;
  make: () => LockBackend | Promise<LockBackend>;
}

const store = new MemoryStore();
const dir = mkdtempSync(join(tmpdir(), 'locksmith-recipes-'));

export const targets: RecipeTarget[] = [
  { name: 'memory', make: () => memoryBackend({ store }) },
  { name: 'file', make: () => fileBackend({ dir }) },
];
