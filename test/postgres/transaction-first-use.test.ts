// withTransactionLock creates its fence sequence inside the caller's transaction on first use; several
// transactions doing that at once must all succeed (a job queue's workers start together).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { withTransactionLock } from '../../src/backends/postgres/index.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;
before(async () => (db = await createDatabase()));
after(() => db.drop());

test('concurrent first uses of a new sequence each get a lock and a distinct fence', async () => {
  const pool = db.pool({ max: 6 });
  try {
    const fences = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          // Two locks per transaction: the second one reuses what the first learned about the sequence,
          // while the other transactions (possibly not yet able to see it) take their first.
          const first = await withTransactionLock(client, `job:${i}`, (lock) => lock.fence, { sequence: 'first_use_fence' });
          const second = await withTransactionLock(client, `job:${i}:b`, (lock) => lock.fence, { sequence: 'first_use_fence' });
          await client.query('COMMIT');
          return [first, second];
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        } finally {
          client.release();
        }
      }),
    );
    assert.equal(new Set(fences.flat()).size, 12);
  } finally {
    await pool.end();
  }
});

test('a transaction that first uses a sequence another open transaction created waits for it, then gets a fence', async () => {
  const pool = db.pool({ max: 2 });
  const a = await pool.connect();
  const b = await pool.connect();
  try {
    await a.query('BEGIN');
    await b.query('BEGIN');
    const first = await withTransactionLock(a, 'one', (lock) => lock.fence, { sequence: 'opened_fence' });
    // The sequence exists only inside a's open transaction: b cannot see it, whatever this process knows.
    const second = withTransactionLock(b, 'two', (lock) => lock.fence, { sequence: 'opened_fence' });
    const early = await Promise.race([
      second.then(
        () => 'settled',
        () => 'settled',
      ),
      delay(200).then(() => 'waiting'),
    ]);
    assert.equal(early, 'waiting', 'b must wait for the creating transaction, not fail or skip the sequence');
    await a.query('COMMIT');
    const fence = await second;
    await b.query('COMMIT');
    assert.ok(fence > first, `${fence} after ${first}`);
  } finally {
    await b.query('ROLLBACK').catch(() => undefined);
    a.release();
    b.release();
    await pool.end();
  }
});
