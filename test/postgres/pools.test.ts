// Pool membership on PostgreSQL is one store shared by every instance: a change is atomic across
// them, so two adds at once never take a pool past its size between them.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import type { LockBackend } from '../../src/backend.js';
import { createDatabase, destroyAll, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;
const backends: LockBackend[] = [];

before(async () => {
  db = await createDatabase();
});
after(async () => {
  for (const b of backends) await b.close();
  await db.drop();
  await destroyAll();
});

describe('postgres side tables', () => {
  test('backends opening the rate and pool tables at the same moment all succeed', async () => {
    // CREATE TABLE IF NOT EXISTS does not cover two sessions creating the same table at once: the
    // loser fails on the catalog (a unique violation, or "type already exists"). Four processes
    // starting a rate limiter together met it. Each round names fresh tables.
    const rounds = 8;
    const width = 6;
    for (let round = 0; round < rounds; round++) {
      const sequence = `race_${round}_${process.pid}`;
      const racers = Array.from({ length: width }, () => postgresBackend({ pool: db.pool({ max: 2 }), sequence }));
      backends.push(...racers);
      const outcomes = await Promise.allSettled(
        racers.flatMap((b) => [
          b.rate!.take({ key: 'k', limit: 10, interval: 1_000, burst: 10, cost: 1, peek: false }),
          b.pools!.members('p'),
        ]),
      );
      const failed = outcomes.flatMap((o) => {
        if (o.status === 'fulfilled') return [];
        const reason = o.reason as Error & { cause?: Error };
        return [(reason.cause ?? reason).message];
      });
      assert.deepEqual(failed, [], `round ${round}`);
    }
  });
});

describe('postgres pool store', () => {
  test('two instances adding at once never pass the size: one add fits, the other is refused', async () => {
    const [a, b] = [postgresBackend({ pool: db.pool({ max: 4 }) }), postgresBackend({ pool: db.pool({ max: 4 }) })];
    backends.push(a, b);
    const [pa, pb] = [a.pools!, b.pools!];
    await pa.members('warm'); // the table exists before the races
    for (let round = 0; round < 25; round++) {
      const name = `pool:race:${round}`;
      const [fromA, fromB] = await Promise.all([pa.add(name, ['a1', 'a2'], 3), pb.add(name, ['b1', 'b2'], 3)]);
      const members = await pa.members(name);
      assert.ok(members.length <= 3, `round ${round}: ${members.length} members in a pool of 3 (${String(fromA)}, ${String(fromB)})`);
      assert.equal([fromA, fromB].filter((r) => r === null).length, 1, `round ${round}: exactly one add is refused`);
      assert.equal(members.length, 2);
    }
  });

  test('an assign and an add at once leave either the assigned set alone or both, within the size', async () => {
    const [a, b] = [postgresBackend({ pool: db.pool({ max: 4 }) }), postgresBackend({ pool: db.pool({ max: 4 }) })];
    backends.push(a, b);
    const [pa, pb] = [a.pools!, b.pools!];
    for (let round = 0; round < 25; round++) {
      const name = `pool:assign:${round}`;
      await pa.add(name, ['x'], 3);
      const [, added] = await Promise.all([pa.assign(name, ['s1', 's2', 's3']), pb.add(name, ['y'], 3)]);
      const members = (await pa.members(name)).sort();
      // The add ran first (then the assign replaced everything) or after (then the pool was full).
      assert.deepEqual(members, ['s1', 's2', 's3'], `round ${round}: ${members.join(',')} (add: ${String(added)})`);
    }
  });
});
