// A PostgreSQL job queue where each job runs inside a transaction holding that job's advisory lock:
// four workers race over ten jobs, every job is done exactly once, and no lock outlives its
// transaction (COMMIT releases it, even on PgBouncer in transaction pooling mode).
// Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx examples/pg-job-queue.ts
import pg from 'pg';
import { withTransactionLock } from 'fencelock/postgres';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', max: 4 });
const table = `example_jobs_${process.pid}`;
await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY, done_by text, fence bigint)`);
await pool.query(`INSERT INTO ${table} (id) SELECT generate_series(1, 10)`);

async function worker(name: string): Promise<number> {
  let done = 0;
  for (let id = 1; id <= 10; id++) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await withTransactionLock(
        client,
        `${table}:${id}`,
        async (lock) => {
          // Under the lock: nobody else works on this job until COMMIT.
          const { rows } = await client.query<{ done_by: string | null }>(`SELECT done_by FROM ${table} WHERE id = $1`, [id]);
          if (rows[0]?.done_by) return;
          await client.query(`UPDATE ${table} SET done_by = $1, fence = $2 WHERE id = $3`, [name, lock.fence.toString(), id]);
          done += 1;
        },
        { wait: 5_000 },
      );
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
  }
  return done;
}

try {
  const counts = await Promise.all(['w1', 'w2', 'w3', 'w4'].map(worker));
  const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE done_by IS NOT NULL`);
  console.log('jobs done per worker:', counts.join(', '), '— total', rows[0]?.n);
  if (counts.reduce((a, b) => a + b, 0) !== 10 || rows[0]?.n !== '10') throw new Error('a job was done twice or not at all');
  const held = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  console.log('advisory locks left behind:', held.rows[0]?.n);
  if (held.rows[0]?.n !== '0') throw new Error('a transaction lock outlived its transaction');
} finally {
  await pool.query(`DROP TABLE ${table}`);
  await pool.end();
}
