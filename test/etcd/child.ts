// A separate process for the etcd backend's tests: `hold HOSTS KEY TTL LEASE_TTL` acquires KEY through
// a client of HOSTS (comma-separated host:port), prints "held <fence>", then waits to be killed or
// stopped; if it is stopped past its session lease and resumed, it prints "lost" once it learns.
import { Etcd3 } from 'etcd3';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { Locksmith } from '../../src/index.js';

const [hosts, key, ttl, leaseTtl] = process.argv.slice(2);
const client = new Etcd3({ hosts: hosts!.split(',').map((h) => `http://${h}`) });
const locks = new Locksmith(etcdBackend({ client, leaseTtl: Number(leaseTtl) }), { ttl: Number(ttl) });
locks.on('lost', () => console.log('lost event'));
const lock = await locks.acquire(key!, { autoRenew: true });
lock.signal.addEventListener('abort', () => console.log('lost'));
console.log(`held ${lock.fence}`);
setInterval(() => {}, 1_000);
