// A separate process for the file backend's tests. Modes:
//   hold DIR KEY            acquire KEY, print "held <fence> <owner>", then wait to be killed
//   count DIR KEY FILE N    N times: lock KEY, read-modify-write the number in FILE, print the fence
//   wait DIR KEY            wait for KEY with no poll worth the name (a minute): print "waiting" once
//                           asleep, watching the file, then "got <fence>"
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { fileBackend } from '../../src/backends/file/index.js';
import { Locksmith } from '../../src/index.js';

const [mode, dir, key, file, n] = process.argv.slice(2);
// In wait mode only a wake-up can end the wait in time: the backend's poll, the core's slow retry for
// woken waiters and the sweep of our own spare file (a change event too) are all a minute away.
const locks =
  mode === 'wait'
    ? new Locksmith(fileBackend({ dir: dir!, poll: 60_000, linger: 60_000 }), {
        ttl: 30_000,
        wait: 120_000,
        backoff: { initial: 60_000, max: 60_000 },
      })
    : new Locksmith(fileBackend({ dir: dir! }), { ttl: 30_000, wait: 60_000 });

if (mode === 'hold') {
  const lock = await locks.acquire(key!);
  console.log(`held ${lock.fence} ${lock.owner}`);
  setInterval(() => {}, 1_000);
} else if (mode === 'wait') {
  const pending = locks.acquire(key!);
  // The watch is set up, and the attempt right after it refused, before any timer of ours runs.
  while (!watching()) await delay(5);
  console.log('waiting');
  const lock = await pending;
  console.log(`got ${lock.fence}`);
  await lock.release();
  await locks.close();
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

/** Whether this process has an inotify watch (the file backend's, in wait mode). */
function watching(): boolean {
  return readdirSync('/proc/self/fdinfo').some((fd) => {
    try {
      return readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').includes('inotify wd:');
    } catch {
      return false;
    }
  });
}
