// The parts of an `etcd3` client this backend uses, typed structurally: etcd3 is an optional peer, so
// nothing here imports it, and a user's namespaced client (client.namespace('x')) works the same.

import { LockArgumentError } from '../../errors.js';

export interface KeyValue {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  lease: string;
  value?: Buffer;
}

export interface Header {
  revision: string;
}

export interface RangeRequest {
  key: Buffer;
  range_end?: Buffer;
  sort_order?: number;
  sort_target?: number;
  keys_only?: boolean;
  limit?: number;
}

export interface Compare {
  key: Buffer;
  range_end?: Buffer;
  target: number;
  result: number;
  create_revision?: string | number;
  mod_revision?: string | number;
  lease?: string | number;
}

export interface RequestOp {
  request_range?: RangeRequest;
  request_put?: { key: Buffer; value: Buffer; lease?: string; ignore_lease?: boolean };
  request_delete_range?: { key: Buffer; range_end?: Buffer };
}

export interface ResponseOp {
  response_range?: { kvs: KeyValue[] } | null;
  response_put?: unknown;
  response_delete_range?: { deleted: string } | null;
}

export interface TxnResponse {
  header: Header;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CallOptions {
  deadline?: Date | number;
}

export interface KVClient {
  txn(request: { compare: Compare[]; success: RequestOp[]; failure: RequestOp[] }, options?: CallOptions): Promise<TxnResponse>;
  range(request: RangeRequest, options?: CallOptions): Promise<{ header: Header; kvs: KeyValue[] }>;
  deleteRange(request: { key: Buffer }, options?: CallOptions): Promise<{ header: Header; deleted: string }>;
}

export interface KeepAliveStream {
  write(request: { ID: string }): unknown;
  on(event: 'data', listener: (response: { ID: string; TTL: string }) => void): unknown;
  on(event: 'error' | 'end', listener: (error?: unknown) => void): unknown;
  end(): unknown;
  cancel?(): unknown;
}

export interface LeaseClient {
  leaseGrant(request: { TTL: number; ID?: number }, options?: CallOptions): Promise<{ ID: string; TTL: string; error?: string }>;
  leaseRevoke(request: { ID: string }, options?: CallOptions): Promise<unknown>;
  leaseKeepAlive(options?: CallOptions): Promise<KeepAliveStream>;
}

export interface Watcher {
  on(event: 'delete' | 'put', listener: (kv: KeyValue) => void): unknown;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  cancel(): Promise<void>;
}

export interface WatchBuilder {
  key(key: Buffer): WatchBuilder;
  inRange(range: { start: Buffer; end: Buffer }): WatchBuilder;
  only(...operations: 'delete'[]): WatchBuilder;
  startRevision(revision: string): WatchBuilder;
  watcher(): Watcher;
}

export interface EtcdClient {
  /** The client's namespace ("" for the root client): raw RPCs must add it, builders add it themselves. */
  prefix: Buffer;
  kv: KVClient;
  leaseClient: LeaseClient;
  watch(): WatchBuilder;
}

export function asClient(value: unknown): EtcdClient {
  const c = value as Partial<EtcdClient> | null;
  if (
    !c ||
    typeof c !== 'object' ||
    !Buffer.isBuffer(c.prefix) ||
    typeof c.kv?.txn !== 'function' ||
    typeof c.kv.deleteRange !== 'function' ||
    typeof c.leaseClient?.leaseGrant !== 'function' ||
    typeof c.watch !== 'function'
  ) {
    throw new LockArgumentError('etcdBackend(): client must be an etcd3 client (new Etcd3(...)) or one of its namespaces');
  }
  return c as EtcdClient;
}
