// The etcd backend's options, checked before anything is sent.

import { LockArgumentError } from '../../errors.js';
import { checkOptionNames } from '../../options.js';
import { msOption, prefixOption } from '../shared/checks.js';
import { asClient, type EtcdClient } from './client.js';

export interface EtcdBackendOptions {
  /** An `etcd3` client (`new Etcd3({ hosts })`) or one of its namespaces. Never closed by us. */
  client: unknown;
  /** Prepended to every key (default "locksmith/"). */
  prefix?: string;
  /**
   * The session lease's TTL in ms (whole seconds, default 60 000): how long after this process stops
   * (crash, pause, partition) its locks survive on etcd. A lock's ttl may not exceed it.
   */
  leaseTtl?: number;
  /** How long to wait for etcd's answer to one call (default 5000 ms; an acquire waits at most its ttl). */
  commandTimeout?: number;
}

export function checkOptions(options: EtcdBackendOptions): { client: EtcdClient; prefix: string; leaseTtl: number; timeout: number } {
  const o = checkOptionNames(options, ['client', 'prefix', 'leaseTtl', 'commandTimeout'], 'etcdBackend()');
  const client = asClient(o.client);
  const prefix = prefixOption('etcdBackend()', o.prefix, 'locksmith/');
  const leaseTtl = msOption('etcdBackend()', 'leaseTtl', o.leaseTtl, 60_000, 1_000, 86_400_000);
  if (leaseTtl % 1000 !== 0) throw new LockArgumentError('etcdBackend(): leaseTtl must be a whole number of seconds (etcd leases are)');
  const timeout = msOption('etcdBackend()', 'commandTimeout', o.commandTimeout, 5_000, 1);
  return { client, prefix, leaseTtl, timeout };
}
