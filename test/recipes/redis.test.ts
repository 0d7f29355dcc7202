import { redis } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of redis) recipes(target);
