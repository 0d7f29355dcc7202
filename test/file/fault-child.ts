// A separate process for faults that, before the fix, killed the process holding the lock (SIGBUS
// from a mapped page the file could not back). Prints one JSON line with what each step gave.
//   full DIR       acquire on a full filesystem
//   truncate DIR   hold exclusive and shared locks, have the file truncated under them, carry on
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import { fileBackend, fileNameFor } from '../../src/backends/file/index.js';
import { Locksmith } from '../../src/index.js';

const [mode, dir] = process.argv.slice(2);
const locks = new Locksmith(fileBackend({ dir: dir!, linger: 0 }), { ttl: 30_000, wait: 0 });
const steps: Record<string, string> = {};
const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
  try {
    await fn();
    steps[name] = 'ok';
  } catch (error) {
    steps[name] = `${(error as Error).name}: ${(error as Error).message}`;
  }
};

if (mode === 'full') {
  await step('acquire', () => locks.acquire('full'));
  await step('read', () => locks.read('full-shared'));
} else if (mode === 'truncate') {
  const lock = await locks.acquire('cut');
  const reader = await locks.read('cut-shared');
  truncateSync(join(dir!, fileNameFor('cut')), 0);
  truncateSync(join(dir!, fileNameFor('cut-shared')), 0);
  await step('extend', () => lock.extend(30_000));
  await step('inspect', () => locks.inspect('cut'));
  await step('release', () => lock.release());
  await step('again', async () => (await locks.acquire('cut')).release());
  await step('extend-shared', () => reader.extend(30_000));
  await step('inspect-shared', () => locks.inspect('cut-shared'));
  await step('release-shared', () => reader.release());
}
await locks.close();
console.log(JSON.stringify(steps));
