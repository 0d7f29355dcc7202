import { redlock } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of redlock) recipes(target);
