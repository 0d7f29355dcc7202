// How long a release takes to reach a waiter in another Locksmith: `rounds` times, `holder` takes
// `key`, `waiter` asks for it and is refused (it counts as waiting), then the holder lets go.
import { setTimeout as delay } from 'node:timers/promises';
import type { Locksmith } from '../../src/index.js';

/** Release → grant gaps in ms, sorted. */
export async function wakeGaps(holder: Locksmith, waiter: Locksmith, rounds: number, key = 'wake'): Promise<number[]> {
  const gaps: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const lock = await holder.acquire(key);
    const waiting = waiter.acquire(key, { wait: 10_000 });
    while (waiter.stats().waiting === 0) await delay(1); // refused and waiting: only the release can wake it in time
    const released = performance.now();
    await lock.release();
    const next = await waiting;
    gaps.push(performance.now() - released);
    await next.release();
  }
  return gaps.sort((x, y) => x - y);
}
