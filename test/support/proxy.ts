// A TCP proxy between a client and a real server, for fault tests: it can pass traffic, black-hole
// it (connections stay open and nothing gets through either way, as behind a dead switch), or reset
// every connection at once (as when keepalive finally gives up, or a balancer restarts).
// Held bytes are delivered, in order, when traffic passes again: TCP retransmits rather than loses
// them, so a healed partition looks like a long delay, never like a gap in the stream.

import { connect, createServer, type Server, type Socket } from 'node:net';

export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<[Socket, Socket]>();
  /** Bytes held by the black hole, per direction, to deliver when traffic passes again. */
  readonly #held = new Map<Socket, Buffer[]>();
  #blackhole = false;

  private constructor(targetPort: number) {
    this.#server = createServer((client) => this.#accept(client, targetPort));
  }

  /** Listens on a free port of 127.0.0.1 and forwards each connection to `targetPort` there. */
  static async start(targetPort: number): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', resolve);
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  pass(): void {
    this.#blackhole = false;
    for (const [to, chunks] of this.#held) for (const chunk of chunks) if (to.writable) to.write(chunk);
    this.#held.clear();
  }

  blackhole(): void {
    this.#blackhole = true;
  }

  /** Resets every open connection (the clients see ECONNRESET); new ones are still accepted. */
  dropAll(): void {
    for (const [a, b] of this.#pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.#pairs.clear();
    this.#held.clear();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket, targetPort: number): void {
    const server = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, server];
    this.#pairs.add(pair);
    const end = (): void => {
      this.#pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    for (const s of pair) {
      s.setNoDelay(true);
      // A reset is the fault under test, not an error of the proxy.
      s.on('error', end);
      s.on('close', end);
    }
    this.#forward(client, server);
    this.#forward(server, client);
  }

  #forward(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (!this.#blackhole) return void to.write(chunk);
      const held = this.#held.get(to);
      if (held) held.push(chunk);
      else this.#held.set(to, [chunk]);
    });
  }
}
