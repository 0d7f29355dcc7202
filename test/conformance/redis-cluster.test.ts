import { redisCluster } from './targets.js';
import { conformance } from './suite.js';

for (const target of redisCluster) conformance(target);
