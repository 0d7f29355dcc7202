import { memoryBackend, MemoryStore } from '../../src/backends/memory/index.js';
import { conformance } from './suite.js';

const store = new MemoryStore();
conformance({ name: 'memory', backend: () => memoryBackend({ store }) });
