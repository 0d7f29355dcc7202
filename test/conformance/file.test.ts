import { file } from './targets.js';
import { conformance } from './suite.js';

for (const target of file) conformance(target);
