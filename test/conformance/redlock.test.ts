import { redlock } from './targets.js';
import { conformance } from './suite.js';

for (const target of redlock) conformance(target);
