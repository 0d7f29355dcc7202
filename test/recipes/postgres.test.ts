import { postgres } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of postgres) recipes(target);
