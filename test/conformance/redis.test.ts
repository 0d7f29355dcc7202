import { redis } from './targets.js';
import { conformance } from './suite.js';

for (const target of redis) conformance(target);
