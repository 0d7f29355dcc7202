import { memory } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of memory) recipes(target);
