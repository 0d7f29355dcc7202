import { file } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of file) recipes(target);
