// The lean statement path (lean.ts) against the machine's PostgreSQL: the same rows as pg's own
// query path, a failure that leaves the connection usable, and the plain path for clients it cannot
// drive.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { canRunLean, runLean, runPlain } from '../../src/backends/postgres/lean.js';
import type { PgClientLike } from '../../src/backends/postgres/client.js';
import { Locksmith } from '../../src/index.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;
before(async () => {
  db = await createDatabase();
});
after(async () => {
  await db.drop();
});

/** Columns of the kinds our statements answer (integer, text, boolean, NULL), from array parameters. */
const SAMPLE = {
  name: 'locksmith_test_sample',
  text: `SELECT t.i::int AS i, t.k::text AS k, t.s AS s, NULLIF(t.k, $3::bigint)::text AS n
FROM unnest($1::bigint[], $2::boolean[]) WITH ORDINALITY AS t(k, s, i)`,
};

describe('lean statements', () => {
  test('answer the same rows as text as the plain query path', async () => {
    const pool = db.pool({ max: 1 });
    const client = (await pool.connect()) as unknown as PgClientLike & pg.PoolClient;
    try {
      assert.equal(canRunLean(client), true);
      const values = [['-9223372036854775808', '7', '9223372036854775807'], [true, false, true], '7'];
      const lean = await runLean(client, SAMPLE, values);
      assert.deepEqual(lean, [
        ['1', '-9223372036854775808', 't', '-9223372036854775808'],
        ['2', '7', 'f', null],
        ['3', '9223372036854775807', 't', '9223372036854775807'],
      ]);
      assert.deepEqual(await runPlain(client, SAMPLE, values), lean);
      // Prepared once on the connection, by name, as pg's own named statements are.
      const connection = (client as unknown as { connection: { parsedStatements: Record<string, string> } }).connection;
      assert.equal(connection.parsedStatements[SAMPLE.name], SAMPLE.text);
      assert.deepEqual(await runLean(client, { name: 'locksmith_test_empty', text: 'SELECT 1 WHERE false' }, []), []);
    } finally {
      client.release();
    }
  });

  test("a failed statement rejects with the server's error and leaves the connection usable", async () => {
    const pool = db.pool({ max: 1 });
    const client = (await pool.connect()) as unknown as PgClientLike & pg.PoolClient;
    try {
      const missing = { name: 'locksmith_test_missing', text: "SELECT nextval('locksmith_test_no_such_seq'::regclass)::text" };
      await assert.rejects(runLean(client, missing, []), (error: { code?: string }) => error.code === '42P01');
      // A failure at Parse: pg forgets the statement, so it is parsed again once the sequence exists.
      await client.query('CREATE SEQUENCE locksmith_test_no_such_seq');
      assert.deepEqual(await runLean(client, missing, []), [['1']]);
      // A failure at run time (after a successful Parse) leaves it prepared.
      const divide = { name: 'locksmith_test_divide', text: 'SELECT (1 / $1::int)::text' };
      await assert.rejects(runLean(client, divide, ['0']), (error: { code?: string }) => error.code === '22012');
      assert.deepEqual(await runLean(client, divide, ['1']), [['1']]);
      assert.deepEqual((await client.query('SELECT 2 AS two')).rows, [{ two: 2 }]);
    } finally {
      client.release();
    }
  });

  test('grants and releases go the lean way on pg clients', async () => {
    const kinds: string[] = [];
    class Watched extends pg.Client {
      override query(...args: unknown[]): never {
        const q = args[0] as { name?: string };
        // Other statements (a keepalive, settings put back) may run meanwhile, the plain way.
        if (q.name === 'locksmith_grant' || q.name === 'locksmith_release') kinds.push(`${q.name} ${q.constructor.name}`);
        return (super.query as (...a: unknown[]) => never)(...args);
      }
    }
    const locks = new Locksmith(postgresBackend({ pool: db.pool({ max: 3, Client: Watched }) }), { ttl: 5_000 });
    try {
      const lock = await locks.acquire('lean-watched');
      kinds.length = 0;
      await lock.release();
      await (await locks.acquire('lean-watched-2')).release();
      assert.deepEqual(kinds, ['locksmith_release LeanQuery', 'locksmith_grant LeanQuery', 'locksmith_release LeanQuery']);
    } finally {
      await locks.close();
    }
  });

  test('a client in pipeline mode (which refuses custom queries) gets the plain query path', async () => {
    const pool = db.pool({ max: 3, pipeline: true });
    const client = (await pool.connect()) as unknown as PgClientLike & pg.PoolClient;
    assert.equal(canRunLean(client), false);
    client.release();
    assert.equal(canRunLean({ query: () => Promise.resolve({ rows: [] }) } as unknown as PgClientLike), false);
    const locks = new Locksmith(postgresBackend({ pool }), { ttl: 5_000, wait: 2_000 });
    try {
      const first = await locks.acquire('lean-pipeline');
      assert.equal(await locks.tryAcquire('lean-pipeline'), null);
      await first.release();
      const second = await locks.acquire('lean-pipeline');
      assert.ok(second.fence > first.fence);
      // Several at once ride one batched statement (arrays as parameters).
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => locks.acquire(`lean-pipeline-${i}`)));
      assert.equal(new Set(many.map((l) => l.fence)).size, 20);
      await Promise.all([second, ...many].map((l) => l.release()));
    } finally {
      await locks.close();
    }
  });
});
