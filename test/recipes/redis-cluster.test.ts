import { redisCluster } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of redisCluster) recipes(target);
