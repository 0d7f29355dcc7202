// A separate process for the file backend's tests. Modes:
//   hold DIR KEY            acquire KEY, print "held <fence> <owner>", then wait to be killed
//   count DIR KEY FILE N    N times: lock KEY, read-modify-write the number in FILE, print the fence
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { fileBackend } from '../../src/backends/file/index.js';
import { Locksmith } from '../../src/index.js';

const [mode, dir, key, file, n] = process.argv.slice(2);
const locks = new Locksmith(fileBackend({ dir: dir! }), { ttl: 30_000, wait: 60_000 });

if (mode === 'hold') {
  const lock = await locks.acquire(key!);
  console.log(`held ${lock.fence} ${lock.owner}`);
  setInterval(() => {}, 1_000);
} else if (mode === 'count') {
  for (let i = 0; i < Number(n); i++) {
    await locks.withLock(key!, async (lock) => {
      const value = Number(readFileSync(file!, 'utf8'));
      await delay(Math.random() < 0.5 ? 0 : 1);
      writeFileSync(file!, String(value + 1));
      console.log(String(lock.fence));
    });
  }
  await locks.close();
}
