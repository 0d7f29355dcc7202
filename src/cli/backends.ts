// Backend URLs for the CLI. Each backend module is imported only when its scheme is used, so the
// file backend (the default) needs no client library and no server.

import type { LockBackend } from '../backend.js';
import { UsageError } from './args.js';

export async function backendFor(url: string): Promise<LockBackend> {
  if (url === 'file:' || url.startsWith('file:')) {
    const { fileBackend } = await import('../backends/file/index.js');
    const dir = url.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    return fileBackend(dir ? { dir } : {});
  }
  if (url === 'memory:') throw new UsageError('memory: lives inside one process, so it cannot coordinate commands');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  throw new UsageError(scheme ? `the ${scheme}: backend is not available in this build` : `--backend: "${url}" is not a backend URL (e.g. file:, redis://host:6379)`);
}
