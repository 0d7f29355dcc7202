import { memoryBackend, MemoryStore } from '../../src/backends/memory/index.js';
import { conformance } from './suite.js';

const store = new MemoryStore();
conformance({ name: 'memory', backend: () => memoryBackend({ store }) });

// The same store with its wake-up hidden: proves the backoff-and-poll path that backends without
// notifications rely on.
const polled = new MemoryStore();
conformance({
  name: 'memory, polling (no wake-up)',
  backend: () => {
    const backend = memoryBackend({ store: polled });
    return { ...backend, waitForChange: undefined, capabilities: { ...backend.capabilities, wake: false } };
  },
});
