// Checks a recorded history: `node --import tsx test/safety/check.ts history.jsonl [--bound MS]`.
// Prints the statistics and each violation with the window of the history around it; exits 1 on any.

import { readFileSync } from 'node:fs';
import { check, formatResult } from './checker.js';
import { parseHistory } from './history.js';

const [path, flag, value] = process.argv.slice(2);
if (!path || (flag !== undefined && flag !== '--bound')) {
  console.error('usage: node --import tsx test/safety/check.ts HISTORY.jsonl [--bound MS]');
  process.exit(2);
}
const result = check(parseHistory(readFileSync(path, 'utf8')), value !== undefined ? { boundMs: Number(value) } : {});
console.log(JSON.stringify(result.stats, null, 2));
console.log(formatResult(result));
process.exitCode = result.ok ? 0 : 1;
