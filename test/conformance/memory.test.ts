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
    const { waitForChange: _hidden, ...rest } = memoryBackend({ store: polled });
    return { ...rest, capabilities: { ...rest.capabilities, wake: false } };
  },
});
