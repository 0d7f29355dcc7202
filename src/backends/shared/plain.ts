// A backend written as a class, handed out as a plain object of bound calls: callers (and tests)
// copy or wrap a backend's methods, and a spread class instance would lose them, with `this`.

import type { LockBackend } from '../../backend.js';

type Listener = Parameters<NonNullable<LockBackend['onLost']>>[0];

export function plainBackend(b: LockBackend): LockBackend {
  return {
    name: b.name,
    capabilities: b.capabilities,
    ...(b.pools && { pools: b.pools }),
    ...(b.rate && { rate: b.rate }),
    acquire: (request) => b.acquire(request),
    extend: (key, owner, ttl) => b.extend(key, owner, ttl),
    release: (key, owner, fence) => b.release(key, owner, fence),
    inspect: (key) => b.inspect(key),
    ...(b.waitForChange && { waitForChange: (key: string, signal: AbortSignal) => b.waitForChange!(key, signal) }),
    ...(b.onLost && { onLost: (listener: Listener) => b.onLost!(listener) }),
    close: () => b.close(),
  };
}
