import { memory } from './targets.js';
import { conformance } from './suite.js';

for (const target of memory) conformance(target);
