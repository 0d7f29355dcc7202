// Where lock files live. The default is per user, so another local user cannot plant files or
// symlinks in it: $XDG_RUNTIME_DIR/locksmith, else <tmpdir>/locksmith-<uid>, created 0700.

import { chmodSync, existsSync, lstatSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { LockAcquisitionError } from '../../errors.js';

export function defaultDir(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && isAbsolute(runtime)) return join(runtime, 'locksmith');
  return join(tmpdir(), `locksmith-${process.geteuid?.() ?? 'user'}`);
}

/**
 * Creates the default directory 0700 if missing, then refuses it unless it is a real directory (not
 * a symlink) owned by us and writable by nobody else: one made first by another user is theirs to
 * fill, so nothing is ever written into it.
 */
export function prepareDefault(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const st = lstatSync(dir);
  const uid = process.geteuid?.();
  const why = !st.isDirectory()
    ? 'is not a directory (a symlink?)'
    : uid !== undefined && st.uid !== uid
      ? `is owned by uid ${st.uid}, not by this user (uid ${uid})`
      : (st.mode & 0o022) !== 0
        ? `is writable by ${st.mode & 0o020 ? 'its group' : 'others'} (mode ${(st.mode & 0o777).toString(8)})`
        : undefined;
  if (why) {
    throw new LockAcquisitionError(
      `the file backend's default directory ${dir} ${why}; another user may have made it. Remove it, or pass fileBackend({ dir }) a directory of your own`,
    );
  }
}

/** A directory the caller chose is used as given; only created when missing. */
export function prepareGiven(dir: string, mode: number): void {
  if (existsSync(dir)) return;
  // Searchable by whoever the files' mode lets in, never more; set after mkdir, which the umask trims.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700 | (mode & 0o066) | ((mode & 0o044) >> 2));
}
