// The protected resource: a counter behind a loopback TCP server in the harness process, outside every
// client. It checks fencing tokens the way a careful storage service would: every op, read or write,
// carries the holder's fence; an op with a fence lower than the highest it has seen is rejected, and an
// accepted one raises the bar. Fencing reads too matters: otherwise a paused holder that read before a
// newer holder read could still write after it, and the newer holder's write would overwrite it.
//
// The wire format is one JSON object per line each way; a client connection has one request in flight.

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { HistoryWriter } from './history.js';

export interface ResourceRequest {
  id: number;
  action: 'read' | 'write';
  proc: string;
  client: string;
  session: string;
  fence: string;
  /** Writes: the new value. */
  value?: number;
}

export interface ResourceReply {
  id: number;
  accepted: boolean;
  /** Reads: the value; writes: the value stored (or, rejected, the current one). */
  value: number;
  highest: string;
}

/**
 * Called after the resource decided on an op and before it replies: a fault can stop the client at
 * the exact point where it holds the lock and has read, before it writes.
 */
export type ServeHook = (request: ResourceRequest, reply: ResourceReply) => Promise<void> | void;

export class FencedCounter {
  value: number;
  highest = -1n;
  accepted = { reads: 0, writes: 0 };
  #seq = 0;
  readonly #history: HistoryWriter;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #hooks: ServeHook[] = [];
  readonly #changed = new Set<() => void>();

  constructor(history: HistoryWriter, initial = 0) {
    this.#history = history;
    this.value = initial;
    this.#server = createServer((socket) => this.#serve(socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve((this.#server.address() as { port: number }).port));
    });
  }

  /** Runs `hook` on every decision from now on; call the returned function to stop. */
  addHook(hook: ServeHook): () => void {
    this.#hooks.push(hook);
    return () => {
      const i = this.#hooks.indexOf(hook);
      if (i >= 0) this.#hooks.splice(i, 1);
    };
  }

  /** Resolves once `condition` holds (checked after each decision), or false after `ms`. */
  until(condition: () => boolean, ms: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!condition()) return;
        finish(true);
      };
      const finish = (value: boolean): void => {
        clearTimeout(timer);
        this.#changed.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => finish(condition()), ms);
      this.#changed.add(check);
    });
  }

  decide(request: ResourceRequest): ResourceReply {
    const fence = BigInt(request.fence);
    const accepted = fence >= this.highest;
    if (accepted) {
      this.highest = fence;
      if (request.action === 'write') {
        this.value = request.value ?? this.value;
        this.accepted.writes += 1;
      } else this.accepted.reads += 1;
    }
    const reply: ResourceReply = { id: request.id, accepted, value: this.value, highest: this.highest.toString() };
    this.#seq += 1;
    this.#history.record({
      op: 'serve',
      client: request.client,
      session: request.session,
      action: request.action,
      fence: request.fence,
      accepted,
      value: request.action === 'write' ? (request.value ?? this.value) : this.value,
      seq: this.#seq,
    });
    for (const check of [...this.#changed]) check();
    return reply;
  }

  #serve(socket: Socket): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => this.#sockets.delete(socket));
    // A client killed mid-request resets its connection: nothing to do but forget it.
    socket.on('error', () => socket.destroy());
    let buffer = '';
    let queue = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const request = JSON.parse(line) as ResourceRequest;
        // Decide in arrival order; a hook holding one reply back (a paused client) holds only this
        // connection, whose client is the one paused.
        queue = queue.then(async () => {
          const reply = this.decide(request);
          for (const hook of [...this.#hooks]) await hook(request, reply);
          if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
        });
      }
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A client task's connection to the resource. */
export class ResourceClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, { resolve: (r: ResourceReply) => void; reject: (e: Error) => void }>();
  #next = 0;
  #closed: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    let buffer = '';
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const reply = JSON.parse(buffer.slice(0, nl)) as ResourceReply;
        buffer = buffer.slice(nl + 1);
        this.#pending.get(reply.id)?.resolve(reply);
        this.#pending.delete(reply.id);
      }
    });
    const fail = (error: Error): void => {
      this.#closed ??= error;
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('resource connection closed')));
  }

  static connect(port: number): Promise<ResourceClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.off('error', reject);
        resolve(new ResourceClient(socket));
      });
      socket.once('error', reject);
    });
  }

  request(request: Omit<ResourceRequest, 'id'>): Promise<ResourceReply> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = (this.#next += 1);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.write(`${JSON.stringify({ ...request, id })}\n`);
    });
  }

  /** A crashed process's connections die with it. */
  destroy(): void {
    this.#socket.destroy();
  }

  close(): void {
    this.#socket.end();
  }
}
