import { etcd } from '../conformance/targets.js';
import { recipes } from './suite.js';

for (const target of etcd) recipes(target);
