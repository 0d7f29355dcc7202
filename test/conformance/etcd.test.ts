// The conformance suite on a real 3-member etcd cluster started for this file. Each backend() is a new
// etcd3 client (its own connections, watch stream and session lease), as another process would have.
import type { Etcd3 } from 'etcd3';
import { etcdBackend } from '../../src/backends/etcd/index.js';
import { EtcdCluster } from '../support/etcd.js';
import { conformance } from './suite.js';

let cluster: EtcdCluster;
const clients = new Set<Etcd3>();

conformance({
  name: 'etcd (3 members)',
  before: async () => {
    cluster = await EtcdCluster.start();
  },
  backend: () => {
    const client = cluster.client();
    clients.add(client);
    const backend = etcdBackend({ client, leaseTtl: 30_000 });
    return {
      ...backend,
      close: async () => {
        await backend.close();
        client.close();
        clients.delete(client);
      },
    };
  },
  after: async () => {
    for (const c of clients) c.close();
    await cluster.stop();
  },
});
