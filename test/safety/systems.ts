// Systems under test: a backend plus the clients that use it, and whatever infrastructure faults can
// reach (server nodes, proxies). A new backend plugs in with one SystemFactory here (and, if its
// clients are real processes, an opener in backends.ts); faults in faults.ts find what they act on
// through these interfaces, never through a backend's internals.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Locksmith, type LockBackend } from '../../src/index.js';
import { MemoryStore, memoryBackend } from '../../src/backends/memory/index.js';
import type { BackendSpec } from './backends.js';
import type { ChildConfig } from './client-main.js';
import { TcpProxy } from '../support/proxy.js';
import { PostgresServer } from '../support/postgres.js';
import { RedisNode } from '../support/redis.js';
import { EtcdCluster, type EtcdMember } from '../support/etcd.js';
import { HistoryWriter } from './history.js';
import { Registry } from './registry.js';
import type { ResourceClient } from './resource.js';
import { runClient, type ClientConfig } from './workload.js';

export type ClientState = 'running' | 'paused' | 'dead' | 'stopped';

/** One client process (real, or emulated inside the harness) running the workload. */
export interface ClientHandle {
  readonly proc: string;
  /** The OS process id; undefined when the client is emulated inside the harness. */
  readonly pid: number | undefined;
  readonly state: ClientState;
  /** Set when the client's workload failed on its own (not by a fault): the run is then void. */
  readonly failure: string | undefined;
  /** Stops the process where it is (SIGSTOP, or an emulation): timers, renewals and I/O all halt. */
  pause(): void;
  resume(): void;
  /** Ends the process at once without releasing anything (SIGKILL, or an emulation). */
  kill(): Promise<void>;
  /** Asks it to finish its current session, release and exit; kills it after `ms`. */
  stop(ms: number): Promise<void>;
}

/**
 * A server the backend depends on (a Redis node, a PostgreSQL server), for faults that stop, kill or
 * restart it. Systems without servers (memory, file) expose none.
 */
export interface ServerNode {
  readonly name: string;
  /** SIGKILL the server; it stays down until restart(). */
  kill(): Promise<void>;
  /** Start it again; `keepData: false` wipes what it had persisted first. */
  restart(options: { keepData: boolean }): Promise<void>;
  /** SIGSTOP / SIGCONT. */
  pause(): Promise<void> | void;
  resume(): Promise<void> | void;
  /**
   * Servers whose locks live with sessions (PostgreSQL): ends the sessions that hold locks, as an
   * operator's pg_terminate_backend would; resolves with how many it ended.
   */
  endSessions?(): Promise<number>;
}

/** A TCP proxy between the clients and a server, for partitions. */
export interface FaultProxy {
  readonly name: string;
  /** pass: forward; drop: reset every connection; blackhole: accept and forward nothing; delay: add latency. */
  set(mode: { kind: 'pass' } | { kind: 'drop' } | { kind: 'blackhole' } | { kind: 'delay'; ms: number }): void;
}

export interface SystemUnderTest {
  readonly name: string;
  /** How clients are run, for the report. */
  readonly note: string;
  /** Servers and proxies that infrastructure faults act on; empty when there are none. */
  readonly nodes: readonly ServerNode[];
  /**
   * False when a node cannot come back without its data by a restart alone (an etcd member that lost
   * its data must be removed from the cluster and added again): faults that need it do not apply.
   */
  readonly restartsEmpty?: boolean;
  /**
   * ms a quorum system may need to carry on after losing a node (etcd: electing a new leader when the
   * lost member led); a minority loss lasts this much longer, so "progress during" the fault is
   * progress after the failover, as the system claims it.
   */
  readonly failoverMs?: number;
  readonly proxies: readonly FaultProxy[];
  /** Systems whose clients each connect through a proxy of their own: the one carrying `proc`'s connections. */
  proxyFor?(proc: string): FaultProxy | undefined;
  startClient(config: ClientConfig): Promise<ClientHandle>;
  close(): Promise<void>;
}

/** What a fault must visibly do on a backend, beyond zero violations, for the run to prove anything. */
export interface Expectation {
  /** The resource rejected at least one stale write per injected fault (a paused holder fenced off). */
  staleWritePerFault?: boolean;
  /** No other client completed an acquisition while the fault was in force (the lease outlived it). */
  othersBlocked?: boolean;
  /** Each injected fault crashed a process. */
  crashPerFault?: boolean;
  /** No acquisition at all completed while the fault was in force (a server down or stopped, a majority lost). */
  noGrantsDuring?: boolean;
  /** Some acquisition completed while the fault was in force (a majority or the other clients carried on). */
  progressDuring?: boolean;
  /** Acquisitions failed while the fault was in force, each with LockAcquisitionError: a clear error, never a hang or a timeout. */
  clearFailuresDuring?: boolean;
  /** The holder each fault struck released its lease cleanly afterwards: the lease survived the fault. */
  holderKeepsLease?: boolean;
  /**
   * The fault makes the backend forget leases (a server restarted without its data): two believed
   * holds may then overlap, which is the documented cost. Fencing must still keep the resource right.
   */
  leasesMayBeLost?: boolean;
}

export interface SystemFactory {
  readonly name: string;
  /**
   * Every lease has a ttl its holder is told (expiresAt), so believed holds are bounded and any
   * overlap, even one that fencing made harmless, is a bug. False for leases that live with a
   * connection, whose loss a paused holder cannot learn in time: there fencing is the guarantee.
   */
  readonly boundedLeases: boolean;
  readonly expect: { readonly [fault: string]: Expectation };
  /** Why this system cannot run here (e.g. a server binary is missing), or undefined. */
  unavailable?(): Promise<string | undefined>;
  create(context: { dir: string }): Promise<SystemUnderTest>;
}

const systems = new Registry<SystemFactory>('backend');
export const registerSystem = (factory: SystemFactory): void => systems.add(factory);
export const systemFactory = (name: string): SystemFactory => systems.get(name);
export const systemNames = (): string[] => systems.names();

// ---- in-process clients ------------------------------------------------------------------------

/**
 * A backend whose calls can be held back (an emulated pause: nothing this process sends arrives
 * until it resumes) or never answered (an emulated crash: a dead process sends nothing).
 */
function switchable(inner: LockBackend): { backend: LockBackend; freeze(): void; thaw(): void; die(): void } {
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  let dead = false;
  const pass = <T>(call: () => Promise<T>): Promise<T> => {
    if (dead) return new Promise<T>(() => undefined);
    if (!gate) return call();
    return gate.promise.then(() => pass(call));
  };
  const backend: LockBackend = {
    name: inner.name,
    capabilities: inner.capabilities,
    acquire: (request) => pass(() => inner.acquire(request)),
    extend: (key, owner, ttl) => pass(() => inner.extend(key, owner, ttl)),
    release: (key, owner) => pass(() => inner.release(key, owner)),
    inspect: (key) => pass(() => inner.inspect(key)),
    waitForChange: inner.waitForChange ? (key, signal) => pass(() => inner.waitForChange!(key, signal)) : undefined,
    close: () => (dead ? Promise.resolve() : inner.close()),
  };
  return {
    backend,
    freeze() {
      if (gate || dead) return;
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      gate = { promise, open };
    },
    thaw() {
      const g = gate;
      gate = undefined;
      g?.open();
    },
    die() {
      dead = true;
      this.thaw();
    },
  };
}

/**
 * A client emulated inside the harness: its own Locksmith over a shared MemoryStore. A pause holds
 * back its backend calls and the resource's reply it is waiting for; its own timers still run, so it
 * notices a lost lease during the pause rather than on resume (a real SIGSTOP would delay that).
 */
class InProcessClient implements ClientHandle {
  readonly proc: string;
  readonly pid = undefined;
  state: ClientState = 'running';
  failure: string | undefined;
  readonly #switch: ReturnType<typeof switchable>;
  readonly #locks: Locksmith;
  readonly #history: HistoryWriter;
  readonly #stop = new AbortController();
  readonly #connections = new Set<ResourceClient>();
  readonly #done: Promise<void>;

  private constructor(backend: LockBackend, config: ClientConfig, dir: string, ready: () => void, failed: (e: unknown) => void) {
    this.proc = config.proc;
    this.#switch = switchable(backend);
    this.#locks = new Locksmith(this.#switch.backend, { ttl: config.ttl, wait: config.wait });
    this.#history = new HistoryWriter(join(dir, `${config.proc}.jsonl`), config.proc);
    this.#done = runClient(this.#locks, config, this.#history, this.#stop.signal, { onReady: ready, connections: this.#connections });
    this.#done.catch((error: unknown) => {
      if (this.state !== 'dead') this.failure = `${this.proc}: ${String(error)}`;
      failed(error);
    });
  }

  static start(backend: LockBackend, config: ClientConfig, dir: string): Promise<InProcessClient> {
    return new Promise((resolve, reject) => {
      const client: InProcessClient = new InProcessClient(backend, config, dir, () => resolve(client), reject);
    });
  }

  pause(): void {
    if (this.state !== 'running') return;
    this.state = 'paused';
    this.#switch.freeze();
  }

  resume(): void {
    if (this.state !== 'paused') return;
    this.state = 'running';
    this.#switch.thaw();
  }

  kill(): Promise<void> {
    if (this.state === 'dead' || this.state === 'stopped') return Promise.resolve();
    this.state = 'dead';
    this.#history.close();
    this.#switch.die();
    for (const c of this.#connections) c.destroy();
    this.#stop.abort(new Error('killed'));
    return Promise.resolve();
  }

  async stop(ms: number): Promise<void> {
    if (this.state === 'dead' || this.state === 'stopped') return;
    this.resume();
    this.#stop.abort(new Error('stopped'));
    const finished = await Promise.race([
      this.#done.then(
        () => true,
        () => true,
      ),
      new Promise<false>((r) => setTimeout(() => r(false), ms).unref()),
    ]);
    if (!finished) return this.kill();
    this.state = 'stopped';
    await this.#locks.close();
    this.#history.close();
  }
}

/**
 * A system whose clients are emulated inside the harness, each with a backend from `connect` (which
 * shares the state between them, like one server). Also how a test can run a deliberately broken
 * backend through the whole pipeline.
 */
export function inProcessSystem(
  name: string,
  connect: () => () => LockBackend,
  note: string,
): (context: { dir: string }) => Promise<SystemUnderTest> {
  return ({ dir }) => {
    const backend = connect();
    return Promise.resolve({
      name,
      note,
      nodes: [],
      proxies: [],
      startClient: (config) => InProcessClient.start(backend(), config, dir),
      close: () => Promise.resolve(),
    });
  };
}

/**
 * The client faults on a backend whose leases expire on the server's clock: a paused holder's lease
 * passes to another client, so its write must be fenced off; a killed holder's lease runs out.
 */
const CLIENT_FAULTS: { readonly [fault: string]: Expectation } = {
  'pause-holder': { staleWritePerFault: true },
  'kill-holder': { crashPerFault: true },
};

registerSystem({
  name: 'memory',
  boundedLeases: true,
  expect: CLIENT_FAULTS,
  create: inProcessSystem(
    'memory',
    () => {
      const store = new MemoryStore();
      return () => memoryBackend({ store });
    },
    'clients are Locksmith instances in the harness process sharing one MemoryStore; pause and kill are emulated',
  ),
});

// ---- real client processes ---------------------------------------------------------------------

const CLIENT_MAIN = join(import.meta.dirname, 'client-main.ts');
/** How long a client process may take to start (tsx compiles on the way, on a shared machine). */
const START_MS = 30_000;
const children = new Set<ChildProcess>();

/** SIGKILLs every client process still alive (after hooks call this; so does process exit). */
export function killAllClients(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
process.on('exit', killAllClients);

class ChildClient implements ClientHandle {
  readonly proc: string;
  state: ClientState = 'running';
  failure: string | undefined;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #stderr = '';

  private constructor(config: ChildConfig) {
    this.proc = config.proc;
    this.#child = spawn(process.execPath, ['--import', 'tsx', CLIENT_MAIN, JSON.stringify(config)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    children.add(this.#child);
    this.#child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-4_000);
    });
    this.#exited = new Promise((resolve) => {
      this.#child.on('exit', (code, signal) => {
        children.delete(this.#child);
        if (this.state === 'running' && code !== 0)
          this.failure = `${this.proc} exited (${code ?? signal}) on its own: ${this.#stderr.trim()}`;
        if (this.state !== 'dead') this.state = 'stopped';
        resolve();
      });
    });
    // Its IPC channel may break when it is killed; nothing to do about that here.
    this.#child.on('error', () => undefined);
  }

  static async start(config: ChildConfig): Promise<ChildClient> {
    const client = new ChildClient(config);
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), START_MS);
      client.#child.on('message', (m) => {
        if (m !== 'ready') return;
        clearTimeout(timer);
        resolve(true);
      });
      void client.#exited.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ready) {
      await client.kill();
      throw new Error(`client ${config.proc} did not start: ${client.#stderr.trim() || 'no output'}`);
    }
    return client;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  pause(): void {
    if (this.state !== 'running') return;
    this.state = 'paused';
    this.#child.kill('SIGSTOP');
  }

  resume(): void {
    if (this.state !== 'paused') return;
    this.state = 'running';
    this.#child.kill('SIGCONT');
  }

  async kill(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'dead') return this.#exited;
    this.state = 'dead';
    this.#child.kill('SIGKILL');
    await this.#exited;
  }

  async stop(ms: number): Promise<void> {
    if (this.state === 'stopped' || this.state === 'dead') return;
    this.resume();
    if (this.#child.connected) this.#child.send('stop');
    const timer = setTimeout(() => void this.kill(), ms);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** A real client process on `backend`, writing its history into the run's directory. */
const childClient = (dir: string, backend: BackendSpec, config: ClientConfig): Promise<ChildClient> =>
  ChildClient.start({ ...config, backend, history: join(dir, `${config.proc}.jsonl`) });

registerSystem({
  name: 'file',
  boundedLeases: true,
  expect: {
    // The kernel lock lives with the stopped holder's open file, and its ttl is kept by its own
    // timers, which are stopped too: nobody else gets in, so there is no stale write to fence off.
    'pause-holder': { othersBlocked: true },
    'kill-holder': { crashPerFault: true },
  },
  create({ dir }) {
    const backend: BackendSpec = { kind: 'file', dir: join(dir, 'locks') };
    return Promise.resolve({
      name: 'file',
      note: 'clients are separate node processes on one lock directory; pause is SIGSTOP, kill is SIGKILL',
      nodes: [],
      proxies: [],
      startClient: (config) => childClient(dir, backend, config),
      close: () => Promise.resolve(),
    });
  },
});

// ---- Redis and Redlock: real redis-server nodes --------------------------------------------------

const hasRedis = (): Promise<string | undefined> =>
  new Promise((resolve) =>
    execFile('redis-server', ['--version'], (error) => resolve(error ? 'redis-server is not installed' : undefined)),
  );

/** A persistent node (append-only file, fsync always, in its own directory) as faults see it. */
function serverNode(name: string, node: RedisNode): ServerNode {
  return {
    name,
    kill: () => node.kill(),
    async restart({ keepData }) {
      // The node's directory holds nothing but what the server persisted (append-only dir, RDB).
      if (!keepData) for (const f of readdirSync(node.dir)) rmSync(join(node.dir, f), { recursive: true, force: true });
      await node.restart();
    },
    pause: () => node.pause(),
    resume: () => node.resume(),
  };
}

function faultProxy(name: string, proxy: TcpProxy): FaultProxy {
  return {
    name,
    set(mode) {
      if (mode.kind === 'pass') proxy.pass();
      else if (mode.kind === 'drop') proxy.dropAll();
      else if (mode.kind === 'blackhole') proxy.blackhole();
      else proxy.delay(mode.ms);
    },
  };
}

/**
 * A system of one server whose child clients each reach it at `port` through a TCP proxy of their
 * own, so one client can be cut off while the others carry on; `spec` is the backend a client opens
 * on its proxy's port. Closing it closes the proxies, then `stop`s the server.
 */
function proxiedSystem(
  system: Pick<SystemUnderTest, 'name' | 'note' | 'nodes'> & { dir: string; port: number; stop(): Promise<void> },
  spec: (proxyPort: number, config: ClientConfig) => BackendSpec,
): SystemUnderTest {
  const proxies = new Map<string, FaultProxy>();
  const open: TcpProxy[] = [];
  return {
    name: system.name,
    note: system.note,
    nodes: system.nodes,
    // A getter: the list grows as clients start.
    get proxies() {
      return [...proxies.values()];
    },
    proxyFor: (proc) => proxies.get(proc),
    async startClient(config) {
      const proxy = await TcpProxy.start(system.port);
      open.push(proxy);
      proxies.set(config.proc, faultProxy(`link of ${config.proc}`, proxy));
      return childClient(system.dir, spec(proxy.port, config), config);
    },
    async close() {
      await Promise.all(open.map((p) => p.close()));
      await system.stop();
    },
  };
}

/** How long one Redis call may take before it fails (commandTimeout): well under the ttl, twice the slow link's round trip. */
const redisCommandMs = (ttl: number): number => Math.round(ttl / 2);
/** Redlock's per-node timeout: a loaded 2-core machine answers a script call well within it. */
const REDLOCK_NODE_MS = 100;

registerSystem({
  name: 'redis',
  boundedLeases: true,
  expect: {
    ...CLIENT_FAULTS,
    'server-restart': { noGrantsDuring: true, holderKeepsLease: true },
    'server-restart-empty': { noGrantsDuring: true, staleWritePerFault: true, leasesMayBeLost: true },
    'server-pause': { noGrantsDuring: true },
    'partition-holder': { progressDuring: true, staleWritePerFault: true },
    'slow-network': { progressDuring: true },
    // The leases live on the server: the holder reconnects and still releases its own.
    'reset-links': { holderKeepsLease: true },
  },
  unavailable: hasRedis,
  async create({ dir }) {
    const node = await RedisNode.start({ persistent: true });
    return proxiedSystem(
      {
        name: 'redis',
        note: 'one redis-server (appendonly, fsync always); clients are separate node processes (ioredis), each through its own TCP proxy',
        nodes: [serverNode('redis', node)],
        dir,
        port: node.port,
        stop: () => node.stop(),
      },
      (port, config) => ({ kind: 'redis', port, commandTimeout: redisCommandMs(config.ttl) }),
    );
  },
});

registerSystem({
  name: 'redlock',
  boundedLeases: true,
  expect: {
    ...CLIENT_FAULTS,
    'minority-loss': { progressDuring: true },
    'majority-loss': { noGrantsDuring: true, clearFailuresDuring: true },
    'node-pause': { progressDuring: true },
    // A short outage of one node of five: the check is that fences still rise and nobody overlaps.
    'node-restart-empty': {},
    // Cut off from every node, the holder cannot renew: its lease runs out and another takes over.
    'partition-holder': { progressDuring: true },
    // A round trip (ttl/4) longer than nodeTimeout makes every node a failed vote: no progress is
    // expected while it lasts, only that nothing unsafe happens and the lock works again after.
    'slow-network': {},
    'reset-links': {},
  },
  unavailable: hasRedis,
  async create({ dir }) {
    const nodes = await Promise.all([0, 1, 2, 3, 4].map(() => RedisNode.start({ persistent: true })));
    // Each client reaches each node through a proxy of its own; one fault proxy acts on all five of
    // a client's links at once (a partition cuts the client off from every node).
    const links = new Map<string, FaultProxy>();
    const open: TcpProxy[] = [];
    return {
      name: 'redlock',
      note: 'five redis-server nodes (appendonly, fsync always); clients are separate node processes (ioredis), each through a TCP proxy of its own to every node',
      nodes: nodes.map((n, i) => serverNode(`node${i + 1}`, n)),
      get proxies() {
        return [...links.values()];
      },
      proxyFor: (proc) => links.get(proc),
      async startClient(config) {
        const proxies = await Promise.all(nodes.map((n) => TcpProxy.start(n.port)));
        open.push(...proxies);
        const each = proxies.map((p, i) => faultProxy(`node${i + 1}`, p));
        links.set(config.proc, { name: `links of ${config.proc}`, set: (mode) => each.forEach((p) => p.set(mode)) });
        return childClient(dir, { kind: 'redlock', ports: proxies.map((p) => p.port), nodeTimeout: REDLOCK_NODE_MS }, config);
      },
      async close() {
        await Promise.all(open.map((p) => p.close()));
        await Promise.all(nodes.map((n) => n.stop()));
      },
    };
  },
});

// ---- PostgreSQL: a private server -------------------------------------------------------------

const hasPostgres = (): Promise<string | undefined> =>
  new Promise((resolve) =>
    execFile('sh', ['-c', 'ls -d /usr/lib/postgresql/*/bin/initdb'], (error) =>
      resolve(error ? 'PostgreSQL (initdb) is not installed' : undefined),
    ),
  );

function postgresNode(server: PostgresServer): ServerNode {
  return {
    name: 'postgres',
    kill: () => server.kill(),
    async restart({ keepData }) {
      if (!keepData) await server.wipe();
      await server.restart();
    },
    pause: () => server.pause(),
    resume: () => server.resume(),
    async endSessions() {
      const r = await server.query(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()`,
      );
      return Number((r.rows[0] as { n?: number } | undefined)?.n ?? 0);
    },
  };
}

registerSystem({
  name: 'postgres',
  boundedLeases: true,
  expect: {
    ...CLIENT_FAULTS,
    // A restart ends every session, and so every lock: holders learn it from their connections.
    'server-restart': { noGrantsDuring: true, leasesMayBeLost: true },
    'server-restart-empty': { noGrantsDuring: true, leasesMayBeLost: true },
    'server-pause': { noGrantsDuring: true },
    'partition-holder': { progressDuring: true, staleWritePerFault: true },
    'slow-network': { progressDuring: true },
    // The server frees the lock the moment it ends the session; the holder learns it a moment later,
    // from its connection, and a successor may already have the lock: a documented cost, as for any
    // lock a server can revoke. Fencing must keep the resource right (its write is rejected).
    'terminate-holder': { staleWritePerFault: true, leasesMayBeLost: true },
    // A reset connection ends its session on the server, and so its lock.
    'reset-links': { leasesMayBeLost: true },
  },
  unavailable: hasPostgres,
  async create({ dir }) {
    const server = await PostgresServer.start();
    return proxiedSystem(
      {
        name: 'postgres',
        note: 'a private PostgreSQL server (initdb here); clients are separate node processes (pg pools), each through its own TCP proxy',
        nodes: [postgresNode(server)],
        dir,
        port: server.port,
        stop: () => server.destroy(),
      },
      (port) => ({ kind: 'postgres', port }),
    );
  },
});

// ---- etcd: a real 3-member cluster -------------------------------------------------------------

const hasEtcd = (): Promise<string | undefined> =>
  new Promise((resolve) =>
    execFile('etcd', ['--version'], (error) => resolve(error ? 'etcd is not installed (Debian: etcd-server)' : undefined)),
  );

function etcdNode(member: EtcdMember, cluster: EtcdCluster): ServerNode {
  return {
    name: member.name,
    kill: () => member.kill(),
    async restart({ keepData }) {
      // A member that lost its data must be removed and added again; no fault here asks for that.
      if (!keepData) throw new Error('an etcd member restarts with its data only');
      await member.start();
      await cluster.ready();
      // ready() asks only the members that run: one that could not come back (its port taken by
      // another test's server meanwhile) would otherwise pass as healed.
      if (!member.running) throw new Error(`etcd member ${member.name} did not come back (${member.exit})`);
    },
    pause: () => member.pause(),
    resume: () => member.resume(),
  };
}

registerSystem({
  name: 'etcd',
  boundedLeases: true,
  expect: {
    ...CLIENT_FAULTS,
    'minority-loss': { progressDuring: true },
    // Without a quorum nothing commits: no grants, and calls fail at their deadline. Keep-alives fail
    // too, so sessions (and their locks) may be declared lost.
    'majority-loss': { noGrantsDuring: true, clearFailuresDuring: true, leasesMayBeLost: true },
    // Not progressDuring: a call sent to a stopped member (or over the slowed links) waits for its
    // deadline (ttl/2) and the session lease is the ttl, so a fault about one ttl long may pass with
    // no grant at all. Safety and the recovery bound after the heal are still checked.
    'node-pause': {},
    'partition-holder': { progressDuring: true, staleWritePerFault: true },
    'slow-network': {},
    // The session lease lives on the cluster: the holder reconnects and still releases its own.
    'reset-links': { holderKeepsLease: true },
  },
  unavailable: hasEtcd,
  async create({ dir }) {
    const cluster = await EtcdCluster.start();
    // Each client reaches every member through proxies of its own, cut off (or slowed) together.
    const links = new Map<string, TcpProxy[]>();
    const proxyOf = (proc: string, group: TcpProxy[]): FaultProxy => ({
      name: `links of ${proc}`,
      set: (mode) => group.forEach((p) => faultProxy(proc, p).set(mode)),
    });
    return {
      name: 'etcd',
      note: 'a 3-member etcd cluster (heartbeat 50 ms, election 500 ms); clients are separate node processes (etcd3), each through its own TCP proxies to every member; session lease = ttl',
      nodes: cluster.members.map((m) => etcdNode(m, cluster)),
      restartsEmpty: false,
      // A new leader within 2 election timeouts (500 ms, randomized up to twice that).
      failoverMs: 1_000,
      get proxies() {
        return [...links].map(([proc, group]) => proxyOf(proc, group));
      },
      proxyFor: (proc) => {
        const group = links.get(proc);
        return group && proxyOf(proc, group);
      },
      async startClient(config) {
        const group = await Promise.all(cluster.members.map((m) => TcpProxy.start(m.clientPort)));
        links.set(config.proc, group);
        const spec: BackendSpec = {
          kind: 'etcd',
          ports: group.map((p) => p.port),
          leaseTtl: Math.ceil(config.ttl / 1000) * 1000,
          commandTimeout: Math.round(config.ttl / 2),
        };
        return childClient(dir, spec, config);
      },
      async close() {
        await Promise.all([...links.values()].flat().map((p) => p.close()));
        await cluster.stop();
      },
    };
  },
});
