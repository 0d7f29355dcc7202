// withTransactionLock creates its fence sequence inside the caller's transaction on first use; several
// transactions doing that at once must all succeed (a job queue's workers start together).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
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
          const fence = await withTransactionLock(client, `job:${i}`, (lock) => lock.fence, { sequence: 'first_use_fence' });
          await client.query('COMMIT');
          return fence;
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        } finally {
          client.release();
        }
      }),
    );
    assert.equal(new Set(fences).size, 6);
  } finally {
    await pool.end();
  }
});
