// One real client process: `node --import tsx test/safety/client-main.ts '<json ChildConfig>'`.
// It runs the workload until the harness sends 'stop' over the IPC channel, then releases what it
// holds and exits. Its history goes to its own file, one write per entry, so SIGKILL loses little.

import { Locksmith } from '../../src/index.js';
import { openBackend, type BackendSpec } from './backends.js';
import { HistoryWriter } from './history.js';
import { runClient, type ClientConfig } from './workload.js';

export interface ChildConfig extends ClientConfig {
  backend: BackendSpec;
  history: string;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const history = new HistoryWriter(config.history, config.proc);
const locks = new Locksmith(await openBackend(config.backend), { ttl: config.ttl, wait: config.wait });
const stop = new AbortController();
process.on('message', (message) => {
  if (message === 'stop') stop.abort(new Error('stopped'));
});
// The harness going away (its test ended or crashed) must not leave this process running.
process.on('disconnect', () => stop.abort(new Error('stopped')));

await runClient(locks, config, history, stop.signal, { onReady: () => process.send?.('ready') });
await locks.close();
history.close();
if (process.connected) process.disconnect();
