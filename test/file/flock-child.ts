// Runs in a process that loads the portable flock(2) build (FENCELOCK_PREBUILD=build/flock): takes
// a read lock and two semaphore permits, lists the lock directory while they are held and after
// they are released (linger 0: swept at once), and prints it all as JSON.
import { readdirSync } from 'node:fs';
import { fileBackend } from '../../src/backends/file/index.js';
import { native } from '../../src/backends/file/native.js';
import { Locksmith } from '../../src/index.js';

const dir = process.argv[2]!;
const locks = new Locksmith(fileBackend({ dir, linger: 0 }), { ttl: 30_000, wait: 0 });
const other = new Locksmith(fileBackend({ dir, linger: 0 }), { ttl: 30_000, wait: 0 });
const reader = await locks.read('rw');
const writerRefused = (await other.tryAcquire('rw')) === null;
const sem = locks.semaphore('sem', { limit: 2 });
const permits = [await sem.acquire(), await other.semaphore('sem', { limit: 2 }).acquire()];
const thirdRefused = (await sem.tryAcquire()) === null;
const held = readdirSync(dir).sort();
await Promise.all([reader, ...permits].map((l) => l.release()));
const after = readdirSync(dir).sort();
await Promise.all([locks.close(), other.close()]);
console.log(JSON.stringify({ kind: native().kind, writerRefused, thirdRefused, held, after }));
