// Locksmith → OpenTelemetry, through node:diagnostics_channel: a span per acquire, release and extend
// (attributes: key, backend, mode, owner, fence, outcome, waited and held ms), a wait-time and a
// hold-time histogram, and a counter of lost leases. Locksmith itself depends on no tracer: this file
// is all the glue, and @opentelemetry/api is its only import. Register an SDK (or any provider) as
// usual; with none registered the API's no-op tracer and meter make this cost next to nothing.
//
// Run: node --import tsx examples/opentelemetry.ts

import diagnostics from 'node:diagnostics_channel';
import { SpanStatusCode, metrics, trace, type Attributes, type Span } from '@opentelemetry/api';
import { Locksmith } from 'fencelock';
import { memoryBackend } from 'fencelock/memory';

interface LockContext {
  key: string;
  backend: string;
  mode: string;
  owner?: string;
  fence?: bigint;
  waited?: number;
  held?: number;
  outcome?: string;
  error?: unknown;
}

/** Subscribes to Locksmith's channels; returns the unsubscribe. */
export function instrumentLocksmith(): () => void {
  const tracer = trace.getTracer('locksmith');
  const meter = metrics.getMeter('locksmith');
  const waits = meter.createHistogram('locksmith.lock.wait', { unit: 'ms', description: 'From asking for a lock to holding it' });
  const holds = meter.createHistogram('locksmith.lock.hold', { unit: 'ms', description: 'From holding a lock to giving it back' });
  const lost = meter.createCounter('locksmith.lock.lost', { description: 'Leases lost before release' });
  const spans = new WeakMap<object, Span>();
  // Metric attributes stay low-cardinality: lock names (keys) go on spans only.
  const labels = (c: LockContext): Attributes => ({
    'locksmith.backend': c.backend,
    'locksmith.mode': c.mode,
    'locksmith.outcome': c.outcome ?? 'unknown',
  });
  const unsubscribes: (() => void)[] = [];

  for (const operation of ['acquire', 'release', 'extend'] as const) {
    const channel = diagnostics.tracingChannel<object, LockContext>(`locksmith:${operation}`);
    const handlers = {
      start: (c: LockContext) => {
        const attributes: Attributes = { 'locksmith.key': c.key, 'locksmith.backend': c.backend, 'locksmith.mode': c.mode };
        spans.set(c, tracer.startSpan(`locksmith.${operation}`, { attributes }));
      },
      end: () => undefined,
      asyncStart: () => undefined,
      error: (c: LockContext) => {
        const span = spans.get(c);
        if (c.error instanceof Error) span?.recordException(c.error);
        span?.setStatus({ code: SpanStatusCode.ERROR });
      },
      // A traced promise always ends here, settled either way.
      asyncEnd: (c: LockContext) => {
        const span = spans.get(c);
        span?.setAttributes({
          'locksmith.outcome': c.outcome ?? 'unknown',
          ...(c.owner !== undefined ? { 'locksmith.owner': c.owner } : {}),
          ...(c.fence !== undefined ? { 'locksmith.fence': c.fence.toString() } : {}),
          ...(c.waited !== undefined ? { 'locksmith.waited_ms': c.waited } : {}),
          ...(c.held !== undefined ? { 'locksmith.held_ms': c.held } : {}),
        });
        span?.end();
        if (operation === 'acquire' && c.waited !== undefined) waits.record(c.waited, labels(c));
        if (operation === 'release' && c.held !== undefined) holds.record(c.held, labels(c));
      },
    };
    channel.subscribe(handlers);
    unsubscribes.push(() => channel.unsubscribe(handlers));
  }
  const onLost = (message: unknown): void => {
    const c = message as LockContext;
    lost.add(1, { 'locksmith.backend': c.backend, 'locksmith.mode': c.mode });
    if (c.held !== undefined) holds.record(c.held, { ...labels(c), 'locksmith.outcome': 'lost' });
  };
  diagnostics.subscribe('locksmith:lost', onLost);
  unsubscribes.push(() => diagnostics.unsubscribe('locksmith:lost', onLost));
  return () => unsubscribes.forEach((u) => u());
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const stop = instrumentLocksmith();
  const locks = new Locksmith(memoryBackend());
  await locks.withLock('report:daily', async (lock) => {
    await lock.extend();
    console.log(`held report:daily with fence ${lock.fence}; spans went to the registered tracer provider`);
  });
  console.log(locks.stats().holdTimes);
  await locks.close();
  stop();
}
