// Loads the native addon (native/ofd.c) that sets open file description locks. Loaded on first use,
// so a failed build only affects the file backend, with a message that says what to do.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { LockAcquisitionError } from '../../errors.js';
import { here } from './locate.js';

export const UNLOCK = 0;
export const SHARED = 1;
export const EXCLUSIVE = 2;

export interface OfdLocks {
  /** true when set, false when another open file holds a conflicting lock. */
  lock(fd: number, type: 0 | 1 | 2, start: number, len: number): boolean;
  /** 0 when a lock of `type` could be set now, else the conflicting lock's type. */
  probe(fd: number, type: 1 | 2, start: number, len: number): 0 | 1 | 2;
}

let loaded: OfdLocks | undefined;

export function ofd(): OfdLocks {
  if (loaded) return loaded;
  if (process.platform !== 'linux') {
    throw new LockAcquisitionError(`the file backend needs Linux open file description locks; this is ${process.platform}`);
  }
  // src/backends/file or dist/{esm,cjs}/backends/file: the package root is 3 or 4 levels up.
  const candidates = [3, 4].map((up) => join(here, ...Array<string>(up).fill('..'), 'build/Release/locksmith_ofd.node'));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new LockAcquisitionError(
      'the file backend needs its native addon, which was not built (it builds on install with node-gyp, python3, make and a C compiler); run `npm rebuild locksmith` and read its output',
    );
  }
  const require = createRequire(join(here, 'native.js'));
  loaded = require(found) as OfdLocks;
  return loaded;
}
