// Polls `condition` until it holds, failing after `ms`: for tests that watch another process or a
// server reach a state they cannot be told about.
import { setTimeout as delay } from 'node:timers/promises';

/** `every`: ms between looks (a condition that reads the servers' metrics asks less often). */
export async function until(condition: () => boolean | Promise<boolean>, ms = 10_000, every = 5): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(every);
  }
}
