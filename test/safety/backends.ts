// How a client process builds its backend from a plain, serialisable spec. A backend that runs in
// real client processes adds one entry here (e.g. `redis: ({ url }) => redisBackend({ client: … })`)
// and a system in systems.ts that passes the spec.

import { fileBackend } from '../../src/backends/file/index.js';
import type { LockBackend } from '../../src/index.js';

export type BackendSpec = { kind: 'file'; dir: string } | { kind: string; [option: string]: unknown };

type Opener = (spec: BackendSpec) => LockBackend | Promise<LockBackend>;

const openers = new Map<string, Opener>([['file', (spec) => fileBackend({ dir: String(spec.dir) })]]);

export function registerBackend(kind: string, open: Opener): void {
  openers.set(kind, open);
}

export async function openBackend(spec: BackendSpec): Promise<LockBackend> {
  const open = openers.get(spec.kind);
  if (!open) throw new Error(`no client-side opener for backend "${spec.kind}" (register one in test/safety/backends.ts)`);
  return open(spec);
}
