// A real 3-member etcd cluster for tests: each member on free ports in its own temp dir, never a
// server the tests did not start. Members can be killed (SIGKILL), paused (SIGSTOP) and restarted on
// their data; each runs under the guard of guard.ts, so none outlives the tests. On request, each
// member's peer traffic goes through a TCP proxy (proxy.ts), so a link between members can fail.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, type IOptions } from 'etcd3';
import { signalGuarded, spawnGuarded, type Guarded } from './guard.js';
import { TcpProxy } from './proxy.js';
import { freePort } from './redis.js';

const all = new Set<EtcdCluster>();

export class EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /**
   * Where the other members reach this one (EtcdCluster.start's peerProxies). Raft's streams are
   * dialled by the receiver, so this proxy's answers carry every message this member sends.
   */
  readonly peerProxy: TcpProxy | undefined;
  readonly dir: string;
  #server: Guarded | undefined;
  #cluster: string;
  #token: string;
  #started = false;

  constructor(
    name: string,
    ports: { client: number; peer: number; proxy?: TcpProxy | undefined },
    dir: string,
    cluster: string,
    token: string,
  ) {
    this.name = name;
    this.clientPort = ports.client;
    this.peerPort = ports.peer;
    this.peerProxy = ports.proxy;
    this.dir = dir;
    this.#cluster = cluster;
    this.#token = token;
  }

  /** The port the other members dial: the proxy's, if there is one. */
  get advertisedPeerPort(): number {
    return this.peerProxy?.port ?? this.peerPort;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  get running(): boolean {
    const proc = this.#server?.proc;
    return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
  }

  /** How the member's process ended, for errors. */
  get exit(): string {
    const proc = this.#server?.proc;
    return `exit code ${proc?.exitCode ?? 'none'}, signal ${proc?.signalCode ?? 'none'}`;
  }

  /** The sum of one of the member's gRPC counters for `method`, from its /metrics (e.g. grpc_server_handled_total, "Txn"). */
  async grpcCount(counter: string, method: string): Promise<number> {
    const text = await (await fetch(`http://${this.endpoint}/metrics`)).text();
    let n = 0;
    for (const m of text.matchAll(new RegExp(`^${counter}\\{[^}]*grpc_method="${method}"[^}]*\\} (\\d+)`, 'gm'))) n += Number(m[1]);
    return n;
  }

  /** Starts (again) on the same ports and data directory. */
  async start(): Promise<void> {
    const args = [
      'etcd',
      '--name',
      this.name,
      '--data-dir',
      join(this.dir, 'data'),
      '--listen-client-urls',
      `http://127.0.0.1:${this.clientPort}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${this.clientPort}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${this.peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${this.advertisedPeerPort}`,
      '--initial-cluster',
      this.#cluster,
      '--initial-cluster-state',
      this.#started ? 'existing' : 'new',
      '--initial-cluster-token',
      this.#token,
      // Short election timings so a killed or paused leader is replaced within about a second;
      // the tests' data is small, so fsync costs little.
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      // Pre-vote, as etcd 3.5 and later do by default (3.4 does not): without it, two members
      // restarted together after a majority loss took up to four elections (2.4 s under load) to
      // agree on a leader, where with it they take one.
      '--pre-vote=true',
      '--log-level',
      'error',
    ];
    this.#started = true;
    this.#server = await spawnGuarded(args, `etcd ${this.name}`);
  }

  /** kill -9. */
  async kill(): Promise<void> {
    const proc = this.#server?.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    signalGuarded(this.#server, 'SIGKILL');
    await exited;
  }

  pause(): void {
    signalGuarded(this.#server, 'SIGSTOP');
  }

  resume(): void {
    signalGuarded(this.#server, 'SIGCONT');
  }
}

export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly dir: string;
  readonly #clients = new Set<Etcd3>();

  private constructor(members: EtcdMember[], dir: string) {
    this.members = members;
    this.dir = dir;
  }

  static async start(size = 3, { peerProxies = false } = {}): Promise<EtcdCluster> {
    // tmpfs when there is one: members fsync every write, and the tests are about protocol, not disks.
    const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'locksmith-etcd-'));
    const ports = await Promise.all(Array.from({ length: size * 2 }, () => freePort()));
    const proxies = peerProxies ? await Promise.all(ports.slice(size).map((p) => TcpProxy.start(p))) : [];
    const names = Array.from({ length: size }, (_, i) => `m${i}`);
    const initial = names.map((n, i) => `${n}=http://127.0.0.1:${proxies[i]?.port ?? ports[size + i]}`).join(',');
    const members = names.map(
      (n, i) => new EtcdMember(n, { client: ports[i]!, peer: ports[size + i]!, proxy: proxies[i] }, join(dir, n), initial, dir),
    );
    const cluster = new EtcdCluster(members, dir);
    all.add(cluster);
    try {
      await Promise.all(members.map((m) => m.start()));
      await cluster.ready();
      const dead = members.find((m) => !m.running);
      if (dead) throw new Error(`etcd member ${dead.name} exited (${dead.exit})`);
    } catch (error) {
      // Members left running would keep the test process alive after its tests.
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** A client of the whole cluster (or of `hosts`), closed by stop(). */
  client(options: Partial<IOptions> = {}): Etcd3 {
    const client = new Etcd3({ hosts: this.endpoints.map((e) => `http://${e}`), ...options });
    this.#clients.add(client);
    return client;
  }

  /** Resolves once a leader is elected and a write through every running member commits. */
  async ready(ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (const member of this.members.filter((m) => m.running)) {
      const client = new Etcd3({ hosts: `http://${member.endpoint}` });
      try {
        for (;;) {
          try {
            await client
              .put('locksmith-test/ready')
              .value(member.name)
              .options({ deadline: Date.now() + 1_000 })
              .exec();
            break;
          } catch (error) {
            if (!member.running) throw new Error(`etcd member ${member.name} exited (${member.exit})`, { cause: error });
            if (Date.now() > deadline) throw new Error(`etcd member ${member.name} did not become ready`, { cause: error });
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      } finally {
        client.close();
      }
    }
  }

  /** The member that leads now (asked of each running member in turn). */
  async leader(): Promise<EtcdMember> {
    for (const member of this.members.filter((m) => m.running)) {
      const client = new Etcd3({ hosts: `http://${member.endpoint}` });
      try {
        const status = await client.maintenance.status({ deadline: Date.now() + 1_000 });
        const { members } = await client.cluster.memberList({}, { deadline: Date.now() + 1_000 });
        const named = members.find((m) => m.ID === status.leader)?.name;
        const found = this.members.find((m) => m.name === named);
        if (found) return found;
      } catch {
        // ask the next member
      } finally {
        client.close();
      }
    }
    throw new Error('no etcd member knows a leader');
  }

  async stop(): Promise<void> {
    for (const c of this.#clients) c.close();
    this.#clients.clear();
    await Promise.all(this.members.map((m) => m.kill()));
    for (const m of this.members) await m.peerProxy?.close();
    all.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** For after() hooks: no etcd outlives the tests. */
export async function stopAllEtcd(): Promise<void> {
  await Promise.all([...all].map((c) => c.stop()));
}
process.on('exit', () => {
  for (const c of all) for (const m of c.members) m.kill().catch(() => undefined);
});
