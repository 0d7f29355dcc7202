// A TCP proxy between a client and a real server, for fault tests: it can pass traffic, delay it (a
// slow link: every chunk arrives `ms` late, in order), black-hole it (connections stay open and
// nothing gets through either way, as behind a dead switch, or only the server's answers, as in an
// asymmetric partition), reset every connection at once (as when keepalive finally gives up, or a
// balancer restarts), or send new connections to another server (a balancer failing over).
// Held bytes are delivered, in order, when traffic passes again: TCP retransmits rather than loses
// them, so a healed partition looks like a long delay, never like a gap in the stream.

import { connect, createServer, type Server, type Socket } from 'node:net';

/** What a black hole holds: everything, or only what the server sends (the server hears the client, which never hears back). */
export type Held = 'both' | 'answers';

export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<[Socket, Socket]>();
  /**
   * Bytes not yet delivered, per direction, each with when it is due (Infinity: held by the black
   * hole). One queue per direction keeps the stream in order whatever the mode does meanwhile.
   */
  readonly #pending = new Map<Socket, { queue: { chunk: Buffer; due: number }[]; timer: NodeJS.Timeout | undefined }>();
  #blackhole: Held | undefined;
  #holdAfterAnswer = false;
  #delay = 0;
  #target: number;

  private constructor(targetPort: number) {
    this.#target = targetPort;
    this.#server = createServer((client) => this.#accept(client, this.#target));
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
    this.#blackhole = undefined;
    this.#holdAfterAnswer = false;
    this.#delay = 0;
    this.#release();
  }

  blackhole(held: Held = 'both'): void {
    this.#blackhole = held;
  }

  /** Passes the server's next answer, then holds everything: a server that pauses right after it answered. */
  blackholeAfterNextAnswer(): void {
    this.#holdAfterAnswer = true;
  }

  /** Connections from now on go to `port`; open ones stay where they are (dropAll() ends them). */
  retarget(port: number): void {
    this.#target = port;
  }

  /** Every chunk from now on arrives `ms` late (both ways); what the black hole held leaves now. */
  delay(ms: number): void {
    this.#blackhole = undefined;
    this.#delay = ms;
    this.#release();
  }

  /** Resets every open connection (the clients see ECONNRESET); new ones are still accepted. */
  dropAll(): void {
    this.#endAll((s) => s.resetAndDestroy());
  }

  /**
   * Ends every connection and stops listening. A plain close, not a reset: this is teardown, and a
   * reset of a socket whose other end has just died (a killed server) could leave its handle open
   * with the event loop spinning on it.
   */
  async close(): Promise<void> {
    this.#endAll((s) => s.destroy());
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Ends both sides of every open connection with `end`, and drops what the black hole or a delay still held. */
  #endAll(end: (s: Socket) => void): void {
    for (const [a, b] of this.#pairs) {
      end(a);
      end(b);
    }
    this.#pairs.clear();
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
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
    this.#forward(client, server, false);
    this.#forward(server, client, true);
  }

  #forward(from: Socket, to: Socket, answers: boolean): void {
    from.on('data', (chunk: Buffer) => {
      const pending = this.#pending.get(to);
      const held = this.#blackhole === 'both' || (this.#blackhole === 'answers' && answers);
      if (answers && !held && this.#holdAfterAnswer) {
        this.#holdAfterAnswer = false;
        this.#blackhole = 'both';
      }
      if (!pending && !held && this.#delay === 0) return void to.write(chunk);
      const due = held ? Infinity : performance.now() + this.#delay;
      if (pending) pending.queue.push({ chunk, due });
      else this.#pending.set(to, { queue: [{ chunk, due }], timer: undefined });
      this.#drain(to);
    });
  }

  /** Held bytes become due now (a healed black hole). */
  #release(): void {
    const now = performance.now();
    for (const [to, p] of this.#pending) {
      for (const item of p.queue) if (item.due === Infinity) item.due = now;
      this.#drain(to);
    }
  }

  /** Writes what is due, in order, and arms one timer for the next chunk. */
  #drain(to: Socket): void {
    const p = this.#pending.get(to);
    if (!p) return;
    clearTimeout(p.timer);
    p.timer = undefined;
    const now = performance.now();
    while (p.queue.length > 0 && p.queue[0]!.due <= now) {
      const { chunk } = p.queue.shift()!;
      if (to.writable) to.write(chunk);
    }
    if (p.queue.length === 0) return void this.#pending.delete(to);
    const next = p.queue[0]!.due;
    if (next === Infinity) return;
    p.timer = setTimeout(() => this.#drain(to), Math.max(0, Math.ceil(next - now)));
    p.timer.unref();
  }
}
