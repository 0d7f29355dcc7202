// Runs examples/opentelemetry.ts against a recording tracer and meter provider registered through
// @opentelemetry/api, the way an SDK registers itself: the example's spans and metrics must come out.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { metrics, trace, type Attributes, type Meter, type Span, type SpanStatus, type Tracer } from '@opentelemetry/api';
import { Locksmith } from '../../src/index.js';
import { memoryBackend } from '../../src/backends/memory/index.js';
import { instrumentLocksmith } from '../../examples/opentelemetry.js';

interface Recorded {
  name: string;
  attributes: Attributes;
  status?: SpanStatus;
  exceptions: unknown[];
  ended: boolean;
}

const spans: Recorded[] = [];
const points: { instrument: string; value: number; attributes: Attributes | undefined }[] = [];

function recordingSpan(record: Recorded): Span {
  const span: Span = {
    spanContext: () => ({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 1 }),
    setAttribute: (k, v) => ((record.attributes[k] = v), span),
    setAttributes: (a) => (Object.assign(record.attributes, a), span),
    addEvent: () => span,
    addLink: () => span,
    addLinks: () => span,
    setStatus: (s) => ((record.status = s), span),
    updateName: (n) => ((record.name = n), span),
    end: () => void (record.ended = true),
    isRecording: () => !record.ended,
    recordException: (e) => void record.exceptions.push(e),
  };
  return span;
}

const tracer = {
  startSpan(name: string, options?: { attributes?: Attributes }): Span {
    const record: Recorded = { name, attributes: { ...options?.attributes }, exceptions: [], ended: false };
    spans.push(record);
    return recordingSpan(record);
  },
} as Tracer;

const instrument = (name: string) => ({
  record: (value: number, attributes?: Attributes) => void points.push({ instrument: name, value, attributes }),
  add: (value: number, attributes?: Attributes) => void points.push({ instrument: name, value, attributes }),
});
const meter = { createHistogram: instrument, createCounter: instrument } as unknown as Meter;

let stop: () => void;
before(() => {
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  metrics.setGlobalMeterProvider({ getMeter: () => meter });
  stop = instrumentLocksmith();
});
after(() => {
  stop();
  trace.disable();
  metrics.disable();
});

test('the OpenTelemetry example turns the channels into spans and metrics', async () => {
  const locks = new Locksmith(memoryBackend());
  await locks.withLock('report:daily', async (lock) => {
    await lock.extend();
    await assert.rejects(locks.acquire('report:daily', { wait: 0 }));
  });
  await locks.close();

  assert.deepEqual(
    spans.map((s) => [s.name, s.attributes['locksmith.outcome'], s.ended]),
    [
      ['locksmith.acquire', 'acquired', true],
      ['locksmith.extend', 'extended', true],
      ['locksmith.acquire', 'timeout', true],
      ['locksmith.release', 'released', true],
    ],
  );
  const [granted, , refused, released] = spans;
  assert.equal(granted!.attributes['locksmith.key'], 'report:daily');
  assert.equal(granted!.attributes['locksmith.backend'], 'memory');
  assert.equal(typeof granted!.attributes['locksmith.fence'], 'string');
  assert.equal(refused!.exceptions.length, 1);
  assert.equal(refused!.status?.code, 2); // SpanStatusCode.ERROR
  assert.equal(typeof released!.attributes['locksmith.held_ms'], 'number');
  assert.deepEqual(
    points.map((p) => p.instrument),
    ['locksmith.lock.wait', 'locksmith.lock.wait', 'locksmith.lock.hold'],
  );
  assert.equal(points[0]!.attributes?.['locksmith.key'], undefined, 'no lock names in metric attributes');
});
