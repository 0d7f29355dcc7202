import { postgres } from './targets.js';
import { conformance } from './suite.js';

for (const target of postgres) conformance(target);
