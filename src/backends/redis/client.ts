// The few things the backend needs from a Redis client, for ioredis (Redis, Cluster) and node-redis
// (createClient, createCluster), told apart by their methods. Neither library is imported: the caller
// passes a client, so each stays an optional peer dependency.

import { LockArgumentError } from '../../errors.js';
import { noScript, type Script } from './script.js';

export interface Subscription {
  /** Settles once the server has confirmed the subscription (or it failed: then it is closed). */
  readonly ready: Promise<void>;
  /** Closes the connection, whether or not it ever got ready. */
  close(): Promise<void>;
}

export interface RedisAdapter {
  readonly kind: 'ioredis' | 'node-redis';
  /** Holds this tick's commands back to leave in one write (see ioredis below); node-redis does so itself. */
  batch(): void;
  /** EVALSHA: the script by its SHA (NOSCRIPT when the server lacks it: see runScript). */
  evalsha(s: Script<unknown>, keys: string[], args: (string | number)[]): Promise<unknown>;
  /** EVAL: the script by its source, which also caches it on the server. */
  eval(s: Script<unknown>, keys: string[], args: (string | number)[]): Promise<unknown>;
  /** The server's INFO `section` (a plain client only: a cluster has many servers). */
  info(section: string): Promise<string>;
  /** A second connection, subscribing to `channel`. */
  subscribe(channel: string, onMessage: (message: string) => void): Subscription;
}

/** The socket of an ioredis `Redis` (a `Cluster` has none of its own). */
interface Corkable {
  readonly writable: boolean;
  cork(): void;
  uncork(): void;
}

interface IoRedisLike {
  status?: string;
  stream?: Corkable;
  /** Commands sent and not yet answered (ioredis's own queue; a Cluster has none). */
  commandQueue?: { length: number };
  /** ioredis flattens array arguments (its typings take `keys: RedisKey[]`): passing the arrays saves a spread. */
  evalsha(sha: string, numKeys: number, keys: string[], args: (string | number)[]): Promise<unknown>;
  info(section: string): Promise<string>;
  eval(source: string, numKeys: number, keys: string[], args: (string | number)[]): Promise<unknown>;
  duplicate(): IoRedisLike & {
    subscribe(channel: string): Promise<unknown>;
    on(event: 'message', listener: (channel: string, message: string) => void): unknown;
    on(event: 'error', listener: (error: unknown) => void): unknown;
    disconnect(): void;
  };
  defineCommand: unknown;
}

interface NodeRedisLike {
  evalSha: unknown;
  /** A client's sendCommand(args); a cluster's sendCommand(firstKey, isReadonly, args). */
  sendCommand(...args: unknown[]): Promise<unknown>;
  getSlotMaster?: unknown;
  duplicate(): {
    connect(): Promise<unknown>;
    subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
    on(event: 'error', listener: (error: unknown) => void): unknown;
    disconnect(): Promise<unknown>;
    /** node-redis 5: closes at once, with no reconnection left behind (its disconnect() may leave one). */
    destroy?(): unknown;
  };
}

const noop = (): void => undefined;

/**
 * Commands per write while batching. Measured with 64 workers on distinct keys (bench/redis.ts B, 25
 * interleaved rounds, twice): ratio to the raw commands 0.93 with one write per tick, 0.87-0.90 with
 * none, 1.06-1.31 in writes of 4, 1.32-1.39 of 8, 1.27-1.43 of 16.
 */
const BATCH = 8;

export function adapt(client: unknown): RedisAdapter {
  const c = client as Partial<IoRedisLike & NodeRedisLike> | null;
  if (c && typeof c.evalsha === 'function' && typeof c.duplicate === 'function' && 'defineCommand' in c) {
    return ioredis(c as IoRedisLike);
  }
  if (c && typeof c.evalSha === 'function' && typeof c.duplicate === 'function') return nodeRedis(c as NodeRedisLike);
  throw new LockArgumentError('redisBackend(): client must be an ioredis Redis/Cluster or a node-redis client/cluster');
}

function ioredis(client: IoRedisLike): RedisAdapter {
  // batch(): commands sent in the rest of this tick leave in writes of BATCH (see release in
  // index.ts for where and why), not one: a tick that answers 64 replies would otherwise keep the
  // server idle until the client had made all 64 commands, and then the client idle while the server
  // ran them. In writes of 8 the two overlap, with an eighth of the system calls.
  let corked: Corkable | undefined;
  let held = 0;
  const uncork = (): void => {
    const stream = corked;
    corked = undefined;
    stream?.uncork();
  };
  return {
    kind: 'ioredis',
    batch() {
      if (corked) {
        // This call's command is the next to be written: the ones before it leave now.
        if (++held < BATCH) return;
        held = 0;
        corked.uncork();
        corked.cork();
        return;
      }
      const stream = client.stream;
      if (client.status !== 'ready' || !stream?.writable) return;
      // Nothing in flight: this command likely has the tick to itself (a lone acquire or release).
      // Written at once it saves a cork, a deferred uncork and the buffered write; a second command
      // made in this tick finds this one in flight and corks for the rest.
      if (client.commandQueue?.length === 0) return;
      stream.cork();
      corked = stream;
      held = 0;
      // After this tick's synchronous work and microtasks: nothing waits longer than that.
      process.nextTick(uncork);
    },
    evalsha: (s, keys, args) => client.evalsha(s.sha, keys.length, keys, args),
    eval: (s, keys, args) => client.eval(s.source, keys.length, keys, args),
    info: (section) => client.info(section),
    subscribe(channel, onMessage) {
      const sub = client.duplicate();
      // Errors surface as failed subscribes or reconnects; an unhandled 'error' event would crash.
      sub.on('error', () => undefined);
      sub.on('message', (ch, message) => {
        if (ch === channel) onMessage(message);
      });
      // disconnect(), not quit(): a quit waits behind a subscribe queued for a server that is down.
      const close = (): Promise<void> => Promise.resolve(sub.disconnect());
      const ready = sub.subscribe(channel).then(
        () => undefined,
        async (error: unknown) => {
          await close();
          throw error;
        },
      );
      return { ready, close };
    },
  };
}

function nodeRedis(client: NodeRedisLike): RedisAdapter {
  // Raw commands rather than evalSha(): node-redis 4's cluster routes evalSha by a key it fails to
  // find (FIRST_KEY_INDEX is called with the sha as the options), sending it to a random node.
  const cluster = typeof client.getSlotMaster === 'function';
  const send = (command: string[], firstKey: string): Promise<unknown> =>
    cluster ? client.sendCommand(firstKey, false, command) : client.sendCommand(command);
  return {
    kind: 'node-redis',
    batch: () => undefined,
    evalsha: (s, keys, args) => send(['EVALSHA', s.sha, String(keys.length), ...keys, ...args.map(String)], keys[0]!),
    eval: (s, keys, args) => send(['EVAL', s.source, String(keys.length), ...keys, ...args.map(String)], keys[0]!),
    info: async (section) => String(await send(['INFO', section], '')),
    subscribe(channel, onMessage) {
      const sub = client.duplicate();
      sub.on('error', () => undefined);
      let closed = false;
      // disconnect() (4) and destroy() (5) also end a connect() still retrying against a server that is down.
      const end = async (): Promise<void> => {
        try {
          await (typeof sub.destroy === 'function' ? sub.destroy() : sub.disconnect());
        } catch {
          // Closing is best effort: the connection is going away either way.
        }
      };
      const close = (): Promise<void> => {
        closed = true;
        return end();
      };
      const ready = sub
        .connect()
        .then(() => {
          // A cluster that finished connecting after close() opened node sockets close() never saw,
          // which would reconnect for ever once the servers are gone: end it again.
          if (closed) return end().then(() => Promise.reject(new Error('the subscriber was closed while it connected')));
          return sub.subscribe(channel, (message) => onMessage(message));
        })
        .then(noop, async (error: unknown) => {
          await end();
          throw error;
        });
      return { ready, close };
    },
  };
}

/**
 * Runs `s` by EVALSHA, and by EVAL (which also caches it) when the server lacks it (restarted, or its
 * scripts flushed); the reply or the error goes to `answered` or `failed`. Callbacks, not a promise:
 * its callers (a script call, a Redlock vote per node) settle in those steps, and a promise of its
 * own would cost each call another promise and microtask.
 */
export function runScript(
  redis: RedisAdapter,
  s: Script<unknown>,
  keys: string[],
  args: (string | number)[],
  answered: (reply: unknown) => void,
  failed: (error: unknown) => void,
): void {
  redis.evalsha(s, keys, args).then(answered, (error: unknown) => {
    if (!noScript(error)) return failed(error);
    redis.eval(s, keys, args).then(answered, failed);
  });
}
