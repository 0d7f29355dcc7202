// The conformance suite on a real 3-member etcd cluster started for this file (see targets.ts).
import { etcd } from './targets.js';
import { conformance } from './suite.js';

for (const target of etcd) conformance(target);
