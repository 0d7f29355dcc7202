// fileBackend()'s options, checked before anything touches the filesystem.

import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption } from '../shared/checks.js';
import { ELSEWHERE } from './native.js';

export interface FileBackendOptions {
  /**
   * Where lock files live (created if missing, used as given). Default: a directory of this user's,
   * $XDG_RUNTIME_DIR/locksmith or <os tmpdir>/locksmith-<uid>, created 0700 and refused when another
   * user owns it or it is writable by others.
   */
  dir?: string;
  /**
   * The lock files' permission bits (default 0o600: this user only). A directory shared by a group
   * says so: `{ dir, mode: 0o660 }`; then files of the group's other members are accepted too.
   */
  mode?: number;
  /**
   * How often a refused waiter retries, in ms (default 25). Releases, and holders that die (the
   * kernel closes their files), wake waiters through inotify at once; the poll is only a net for a
   * wake-up that never comes (say, a holder on another machine sharing the directory over NFS).
   */
  poll?: number;
  /**
   * How long a released lock file stays open for reuse before it is removed, in ms (default 1000;
   * 0 removes it at release). Keeps a busy name from being re-created on every acquisition.
   */
  linger?: number;
}

function intIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

export function checkOptions(
  options: FileBackendOptions | undefined,
): Required<Omit<FileBackendOptions, 'dir'>> & { dir: string | undefined } {
  if (process.platform === 'win32') {
    throw new LockArgumentError(`fileBackend(): the file backend does not run on Windows; use ${ELSEWHERE}`);
  }
  const o = checkOptionNames(options, ['dir', 'mode', 'poll', 'linger'], 'fileBackend()');
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.dir.length === 0 || o.dir.includes('\0'))) {
    throw new LockArgumentError('fileBackend(): dir must be a non-empty path');
  }
  // The owner must be able to read and write its own lock files.
  if (o.mode !== undefined && (!intIn(o.mode, 0o600, 0o777) || ((o.mode as number) & 0o600) !== 0o600)) {
    throw new LockArgumentError('fileBackend(): mode must be permission bits from 0o600 to 0o777 that include 0o600');
  }
  return {
    dir: o.dir,
    mode: (o.mode as number | undefined) ?? 0o600,
    poll: msOption('fileBackend()', 'poll', o.poll, 25, 1, 60_000),
    linger: msOption('fileBackend()', 'linger', o.linger, 1_000, 0, 3_600_000),
  };
}
