// The PostgreSQL backend's own behaviour and faults, against real servers: the machine's (through a
// throw-away database) and, for restarts, a private one started here.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { advisoryKey, postgresBackend, withTransactionLock } from '../../src/backends/postgres/index.js';
import { LockAcquisitionError, LockArgumentError, LockExpiredError, LockTimeoutError, Locksmith } from '../../src/index.js';
import { createDatabase, destroyAll, PostgresServer, type TestDatabase } from '../support/postgres.js';

let db: TestDatabase;
const open: Locksmith[] = [];
const children: ChildProcess[] = [];

before(async () => {
  db = await createDatabase();
});
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(open.splice(0).map((l) => l.close()));
  await db.drop();
  await destroyAll();
});

function locksmith(pool: pg.Pool, options?: ConstructorParameters<typeof Locksmith>[1], backendOptions?: object): Locksmith {
  const locks = new Locksmith(postgresBackend({ pool, ...backendOptions }), { ttl: 5_000, wait: 5_000, ...options });
  open.push(locks);
  return locks;
}

/** Advisory locks on the test database, as the server sees them. */
async function advisory(): Promise<{ pid: number; mode: string; granted: boolean; key: string }[]> {
  const r = await db.query(`SELECT pid, mode, granted, ((classid::bigint << 32) | objid::bigint)::text AS key FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
  return r.rows as { pid: number; mode: string; granted: boolean; key: string }[];
}

function aborted(signal: AbortSignal, ms: number): Promise<unknown> {
  return Promise.race([
    new Promise((resolve) => (signal.aborted ? resolve(signal.reason) : signal.addEventListener('abort', () => resolve(signal.reason)))),
    delay(ms).then(() => assert.fail(`not aborted within ${ms} ms`)),
  ]);
}

async function until(condition: () => Promise<boolean> | boolean, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await delay(10);
  }
}

function child(...args: string[]): { proc: ChildProcess; line: () => Promise<string> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'child.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(proc);
  const lines: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  let buffer = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let at: number;
    while ((at = buffer.indexOf('\n')) >= 0) {
      const l = buffer.slice(0, at);
      buffer = buffer.slice(at + 1);
      const w = waiting.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  return { proc, line: () => (lines.length ? Promise.resolve(lines.shift()!) : new Promise((r) => waiting.push(r))) };
}

describe('keys', () => {
  test('the name hash is stable: SHA-256 prefix, signed', () => {
    // A documented contract: changing it would make two versions lock different keys for one name.
    assert.equal(advisoryKey('orders:42'), advisoryKey('orders:42'));
    assert.equal(typeof advisoryKey('x'), 'bigint');
    assert.equal(BigInt.asIntN(64, advisoryKey('x')), advisoryKey('x'));
    // sha256('norders:42') begins 742e5c3c9d43b6c3 (as `printf norders:42 | sha256sum` shows).
    assert.equal(advisoryKey('orders:42'), 0x742e5c3c9d43b6c3n);
  });

  test('an explicit numeric key shares the lock with code that calls pg_advisory_lock itself', async () => {
    const locks = locksmith(db.pool({ max: 3 }), {}, { key: (name: string) => BigInt(name) });
    const raw = db.pool({ max: 1 });
    const c = await raw.connect();
    try {
      await c.query('SELECT pg_advisory_lock(42)');
      assert.equal(await locks.tryAcquire('42'), null);
      const info = await locks.inspect('42');
      assert.equal(info?.mode, 'exclusive');
      assert.match(info?.holders[0]?.owner ?? '', /^pid:\d+$/, 'a holder Locksmith did not grant is shown by its pid');
      await c.query('SELECT pg_advisory_unlock(42)');
      const lock = await locks.acquire('42', { wait: 0 });
      assert.deepEqual(
        (await advisory()).filter((l) => l.key === '42').map((l) => l.granted),
        [true],
      );
      await lock.release();
    } finally {
      c.release();
    }
  });

  test('fences survive a sequence reset (what a crash does to an unlogged one)', async () => {
    const locks = locksmith(db.pool({ max: 2 }));
    const before = await locks.acquire('reset');
    await before.release();
    await db.query(`SELECT setval('public.locksmith_fence', 1)`);
    const after = await locks.acquire('reset');
    assert.ok(after.fence > before.fence, `${after.fence} after ${before.fence}`);
    // The grant's marker moved with its fence: inspect reads the new one, and no marker is left on the old.
    assert.equal((await locks.inspect('reset'))?.holders[0]?.fence, after.fence);
    const markers = async (): Promise<number> =>
      Number(
        (
          (
            await db.query(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
          ).rows[0] as { n: string }
        ).n,
      );
    assert.equal(await markers(), 1);
    const next = await locks.acquire('reset:other');
    assert.ok(next.fence > after.fence, 'and it counts on from there');
    await Promise.all([after.release(), next.release()]);
    assert.equal(await markers(), 0);
    // Two instances that both meet the reset: each fence above every one before, none twice.
    await db.query(`SELECT setval('public.locksmith_fence', 1)`);
    const both = await Promise.all([locks, locksmith(db.pool({ max: 2 }))].map((l, i) => l.acquire(`reset:${i}`)));
    for (const l of both) assert.ok(l.fence > next.fence, `${l.fence} after ${next.fence}`);
    assert.notEqual(both[0]!.fence, both[1]!.fence);
    await Promise.all(both.map((l) => l.release()));
  });

  test('a dropped fence sequence is made again by the next grant', async () => {
    const locks = locksmith(db.pool({ max: 2 }));
    const before = await locks.acquire('dropped');
    await before.release();
    await db.query('DROP SEQUENCE public.locksmith_fence');
    const after = await locks.acquire('dropped', { wait: 0 });
    assert.ok(after.fence > before.fence, 'reseeded from the clock');
    await after.release();
  });

  test('the fence sequence is schema-qualified, made by the backend, and refused when another role owns it', async () => {
    await db.query('CREATE SCHEMA fences');
    const locks = locksmith(db.pool({ max: 3 }), {}, { schema: 'fences', sequence: 'f' });
    await (await locks.acquire('schema')).release();
    const made = await db.query(
      `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'f' AND c.relkind = 'S'`,
    );
    assert.deepEqual(made.rows, [{ nspname: 'fences' }]);
    // A role of its own, and another one that plants the sequence where the app would make it.
    const role = `ls_app_${process.pid}`;
    const other = `ls_other_${process.pid}`;
    await db.query(
      `CREATE ROLE ${role} LOGIN; CREATE ROLE ${other}; CREATE SCHEMA planted AUTHORIZATION ${other}; GRANT USAGE, CREATE ON SCHEMA planted TO ${role}; CREATE SCHEMA ${role} AUTHORIZATION ${role}`,
    );
    try {
      await db.query(
        `SET ROLE ${other}; CREATE SEQUENCE planted.locksmith_fence; GRANT ALL ON SEQUENCE planted.locksmith_fence TO ${role}`,
      );
      const pool = db.pool({ max: 3, user: role });
      const app = locksmith(pool, {}, { schema: 'planted' });
      await assert.rejects(app.acquire('planted', { wait: 0 }), (e: unknown) => {
        assert.ok(e instanceof LockAcquisitionError);
        assert.match(e.message, /belongs to another role/);
        return true;
      });
      await app.close();
      // The tables beside it likewise: planted by the other role, they are refused before any use.
      await db.query(
        `SET ROLE ${other}; CREATE TABLE planted.locksmith_fence_rate (key text PRIMARY KEY, tat float8, allowed boolean); CREATE TABLE planted.locksmith_fence_pool (pool text, member text, PRIMARY KEY (pool, member)); GRANT ALL ON ALL TABLES IN SCHEMA planted TO ${role}`,
      );
      const backend = postgresBackend({ pool, schema: 'planted' });
      const take = { key: 'k', limit: 10, interval: 1_000, burst: 10, cost: 1, peek: false };
      for (const use of [() => backend.rate!.take(take), () => backend.pools!.members('p'), () => backend.pools!.add('p', ['m'], 5)]) {
        await assert.rejects(use(), (e: unknown) => {
          assert.ok(e instanceof LockAcquisitionError, String(e));
          assert.match(e.message, /locksmith_fence_(rate|pool) exists but belongs to another role/);
          return true;
        });
      }
      const members = await db.query('SELECT count(*)::int AS n FROM planted.locksmith_fence_pool');
      assert.deepEqual(members.rows, [{ n: 0 }], 'no member was added');
      // Tables of its own it makes and uses.
      const own = postgresBackend({ pool, schema: role });
      assert.equal((await own.rate!.take(take)).allowed, true);
      assert.equal(await own.pools!.add('p', ['m'], 5), 1);
      await Promise.all([backend.close(), own.close()]);
      await pool.end();
    } finally {
      await db.query(`DROP SCHEMA planted CASCADE; DROP OWNED BY ${role}; DROP ROLE ${role}; DROP ROLE ${other}`);
    }
  });

  test('bad options are LockArgumentErrors', () => {
    const pool = db.pool({ max: 1 });
    assert.throws(() => postgresBackend({} as never), LockArgumentError);
    assert.throws(() => postgresBackend({ pool: { query() {} } }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, sequence: 'x; drop table y' }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, sequence: 'a.b' }), LockArgumentError, 'the schema is its own option');
    assert.throws(() => postgresBackend({ pool, schema: 'x y' }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, connectTimeout: -1 }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, bogus: 1 } as never), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, key: 42 } as never), LockArgumentError);
  });
});

/** Sessions of the test database that a Locksmith named (lock sessions and wake-up connections aside). */
async function lockSessions(): Promise<{ pid: number; app: string }[]> {
  const r = await db.query(
    `SELECT pid, application_name AS app FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'locksmith:%'`,
  );
  return r.rows as { pid: number; app: string }[];
}

describe('many locks on a few connections', () => {
  test('with a pool of 3, one instance holds 40 locks on distinct keys at once, on one session', async () => {
    const pool = db.pool({ max: 3 });
    const locks = locksmith(pool);
    const held = await Promise.all(Array.from({ length: 40 }, (_, i) => locks.acquire(`forty:${i}`)));
    const keys = new Set(held.map((l) => advisoryKey(l.key).toString()));
    const mine = (await advisory()).filter((l) => keys.has(l.key));
    assert.equal(mine.length, 40);
    assert.equal(new Set(mine.map((l) => l.pid)).size, 1, 'all on one session');
    assert.ok(pool.totalCount <= 3);
    assert.equal(new Set(held.map((l) => l.fence)).size, 40, 'a fence each');
    const info = await locksmith(db.pool({ max: 3 })).inspect('forty:7');
    assert.deepEqual(
      info?.holders.map((h) => [h.owner, h.fence]),
      [[held[7]!.owner, held[7]!.fence]],
      'another instance sees owner and fence',
    );
    await Promise.all(held.map((l) => l.release()));
    assert.equal((await advisory()).filter((l) => keys.has(l.key)).length, 0);
  });

  test('with a pool of 3, 12 waiters on a key held by another instance are all served in turn', async () => {
    const [a, b] = [locksmith(db.pool({ max: 3 })), locksmith(db.pool({ max: 3 }))];
    const lock = await a.acquire('twelve');
    const order: number[] = [];
    const fences: bigint[] = [];
    const waiters = Array.from({ length: 12 }, (_, i) =>
      b.withLock(
        'twelve',
        (l) => {
          order.push(i);
          fences.push(l.fence);
          return delay(2);
        },
        { wait: 20_000 },
      ),
    );
    await until(() => b.stats().waiting === 12);
    await lock.release();
    await Promise.all(waiters);
    assert.equal(order.length, 12);
    assert.deepEqual(
      [...fences].sort((x, y) => (x < y ? -1 : 1)),
      fences,
      'fences rise hand to hand',
    );
    assert.ok(fences[0]! > lock.fence);
  });

  test('an aborted waiter settles within 200 ms with the reason and leaves nothing behind', async () => {
    const poolB = db.pool({ max: 3 });
    const [a, b] = [locksmith(db.pool({ max: 3 })), locksmith(poolB, { backoff: { initial: 60_000, max: 60_000 } })];
    const lock = await a.acquire('aborted');
    const holder = (await lockSessions()).map((s) => s.pid);
    const controller = new AbortController();
    const reason = new Error('caller gave up');
    const waiting = b.acquire('aborted', { wait: 60_000, signal: controller.signal });
    await until(() => b.stats().waiting === 1);
    // Announced on the server: a release now would notify it.
    await until(async () => (await advisory()).some((l) => !holder.includes(l.pid)));
    const t0 = performance.now();
    controller.abort(reason);
    await assert.rejects(waiting, (e: unknown) => e === reason);
    assert.ok(performance.now() - t0 < 200, `settled after ${performance.now() - t0} ms`);
    await until(async () => (await advisory()).every((l) => holder.includes(l.pid) && l.granted), 3_000);
    await until(async () => (await lockSessions()).every((s) => holder.includes(s.pid)), 3_000);
    await until(() => poolB.totalCount - poolB.idleCount === 0, 3_000);
    await lock.release();
  });

  test('pg_terminate_backend of one session loses exactly the locks on it', async () => {
    const locks = locksmith(db.pool({ max: 10 }));
    const lost: string[] = [];
    locks.on('lost', (e) => lost.push(e.key));
    // Two ttls: two sessions.
    const short = await Promise.all([0, 1, 2].map((i) => locks.acquire(`term:a${i}`, { ttl: 20_000 })));
    const long = await Promise.all([0, 1, 2].map((i) => locks.acquire(`term:b${i}`, { ttl: 30_000 })));
    const pidOf = async (name: string): Promise<number> => (await advisory()).find((l) => l.key === advisoryKey(name).toString())!.pid;
    const victim = await pidOf('term:a0');
    assert.notEqual(await pidOf('term:b0'), victim);
    await db.query('SELECT pg_terminate_backend($1)', [victim]);
    for (const l of short) assert.ok((await aborted(l.signal, 2_000)) instanceof LockExpiredError);
    assert.deepEqual(lost.sort(), ['term:a0', 'term:a1', 'term:a2']);
    for (const l of long) assert.ok(l.held && !l.signal.aborted);
    await Promise.all(long.map((l) => l.extend()));
    await Promise.all(long.map((l) => l.release()));
  });

  test('a pool busy with the application waits up to the acquire’s wait, and says so', async () => {
    const pool = db.pool({ max: 1 });
    const other = await pool.connect();
    let released = false;
    try {
      const locks = locksmith(pool, {}, { connectTimeout: 300 });
      await assert.rejects(locks.acquire('busy-pool', { wait: 150 }), (e: unknown) => {
        assert.ok(e instanceof LockTimeoutError);
        assert.match(e.message, /connection from the pool/);
        return true;
      });
      await assert.rejects(locks.acquire('busy-pool', { wait: 5_000 }), (e: unknown) => {
        assert.ok(e instanceof LockAcquisitionError);
        assert.match(e.message, /no connection from the pool within 300 ms/);
        return true;
      });
      const later = locks.acquire('busy-pool', { wait: 2_000 });
      setTimeout(() => {
        other.release();
        released = true;
      }, 100);
      await (await later).release();
    } finally {
      if (!released) other.release();
    }
  });

  test('sessions go back to the pool with the settings they came with', async () => {
    const pool = db.pool({ max: 4 });
    const setup = await pool.connect();
    await setup.query("SET application_name = 'mine'");
    setup.release();
    const locks = locksmith(pool);
    const lock = await locks.acquire('settings', { ttl: 4_000 });
    assert.equal((await lockSessions()).length >= 1, true);
    await lock.release();
    await locks.close();
    const c = await pool.connect();
    try {
      const r = await c.query("SELECT current_setting('application_name') AS app, current_setting('idle_session_timeout') AS idle");
      assert.deepEqual(r.rows[0], { app: 'mine', idle: '0' });
    } finally {
      c.release();
    }
  });

  test('after a mix of grants, waits, tries, timeouts and aborts, close() leaves no connection checked out', async () => {
    const pools = [db.pool({ max: 8 }), db.pool({ max: 8 })];
    const [a, b] = pools.map((p) => new Locksmith(postgresBackend({ pool: p }), { ttl: 2_000, wait: 2_000 }));
    const held = await a!.acquire('mix');
    const settled = await Promise.allSettled([
      b!.acquire('mix', { wait: 150 }).catch(() => 'timeout'),
      b!.acquire('mix', { signal: AbortSignal.timeout(100) }).catch(() => 'aborted'),
      b!.tryAcquire('mix'),
      b!.read('mix:rw', { wait: 100 }),
      b!.semaphore('mix:sem', { limit: 1 }).acquire({ wait: 100 }),
    ]);
    assert.deepEqual(
      settled.slice(0, 3).map((r) => (r.status === 'fulfilled' ? r.value : 'rejected')),
      ['timeout', 'aborted', null],
    );
    const stuck = b!.acquire('mix', { wait: 60_000 });
    void stuck.catch(() => undefined);
    await until(() => b!.stats().waiting === 1);
    await Promise.all([a!.close(), b!.close()]);
    for (const p of pools) assert.equal(p.totalCount - p.idleCount, 0, 'a connection is still checked out');
    void held;
  });

  test('permits take slot keys in order, one lock each', async () => {
    const locks = locksmith(db.pool({ max: 5 }));
    const sem = locks.semaphore('slots', { limit: 3 });
    const p1 = await sem.acquire();
    const p2 = await sem.acquire();
    const count = async (): Promise<number> => (await advisory()).filter((l) => l.granted && l.mode === 'ExclusiveLock').length;
    assert.equal(await count(), 2);
    assert.equal(await sem.held(), 2);
    const info = await locksmith(db.pool({ max: 3 })).inspect('slots');
    assert.equal(info?.mode, 'shared');
    assert.deepEqual(new Set(info?.holders.map((h) => h.owner)), new Set([p1.owner, p2.owner]));
    await p1.release();
    const p3 = await sem.acquire();
    assert.equal(await count(), 2, 'the freed first slot was reused');
    await p2.release();
    await p3.release();
  });
});

describe('faults', () => {
  test('a terminated session aborts the signal and emits lost at once; the next holder gets in', async () => {
    const [a, b] = [locksmith(db.pool({ max: 3 })), locksmith(db.pool({ max: 3 }))];
    const lost: unknown[] = [];
    a.on('lost', (e) => lost.push(e));
    const lock = await a.acquire('terminated', { ttl: 60_000 });
    const waiting = b.acquire('terminated', { wait: 10_000 });
    const holder = (await advisory()).find((l) => l.key === advisoryKey('terminated').toString() && l.granted);
    assert.ok(holder);
    const t0 = performance.now();
    await db.query('SELECT pg_terminate_backend($1)', [holder.pid]);
    const reason = await aborted(lock.signal, 2_000);
    assert.ok(reason instanceof LockExpiredError);
    assert.ok(performance.now() - t0 < 1_000, 'learned from the connection, not a renewal');
    assert.equal(lost.length, 1);
    const next = await waiting;
    assert.ok(next.fence > lock.fence);
    await assert.rejects(lock.release());
    await next.release();
  });

  test('a holder process killed with SIGKILL frees the lock at once', async () => {
    const locks = locksmith(db.pool({ max: 2 }));
    const holder = child('hold', JSON.stringify(db.config), 'killed');
    const held = await holder.line();
    assert.match(held, /^held \d+$/);
    const waiting = locks.acquire('killed', { wait: 10_000 });
    await delay(50);
    const t0 = performance.now();
    holder.proc.kill('SIGKILL');
    const lock = await waiting;
    assert.ok(performance.now() - t0 < 1_000, `took ${performance.now() - t0} ms`);
    assert.ok(lock.fence > BigInt(held.split(' ')[1]!));
    await lock.release();
  });

  test('a holder stopped past its ttl loses the lock on the server; resumed, it learns so', async () => {
    const locks = locksmith(db.pool({ max: 2 }));
    const holder = child('hold', JSON.stringify(db.config), 'stopped', '300');
    const held = await holder.line();
    holder.proc.kill('SIGSTOP');
    const t0 = performance.now();
    // idle_session_timeout ends the stopped holder's session after its ttl: the server frees the lock.
    const lock = await locks.acquire('stopped', { wait: 10_000 });
    const waited = performance.now() - t0;
    assert.ok(waited >= 200 && waited < 3_000, `waited ${waited} ms`);
    assert.ok(lock.fence > BigInt(held.split(' ')[1]!));
    holder.proc.kill('SIGCONT');
    assert.equal(await holder.line(), 'lost');
    await lock.release();
  });

  test('a server restart ends every lease; after it, fences still rise', async () => {
    const server = await PostgresServer.start();
    const own = await createDatabase(server.config);
    const pool = own.pool({ max: 3 });
    const locks = new Locksmith(postgresBackend({ pool }), { ttl: 30_000, wait: 5_000 });
    try {
      const lock = await locks.acquire('restart');
      await server.crash();
      assert.ok((await aborted(lock.signal, 5_000)) instanceof LockExpiredError);
      await server.restart();
      // The UNLOGGED fence table was emptied by crash recovery: the next fence comes from the clock.
      const next = await locks.acquire('restart');
      assert.ok(next.fence > lock.fence, `${next.fence} after ${lock.fence}`);
      await next.release();
      await assert.rejects(lock.release());
    } finally {
      await locks.close();
      await own.drop();
      await server.destroy();
    }
  });
});

describe('withTransactionLock', () => {
  test('holds until COMMIT, serializes transactions, and fences them', async () => {
    const pool = db.pool({ max: 3 });
    const [c1, c2] = [await pool.connect(), await pool.connect()];
    try {
      await c1.query('BEGIN');
      const first = await withTransactionLock(c1, 'tx', (l) => l);
      await c2.query('BEGIN');
      let second: bigint | undefined;
      const pending = withTransactionLock(c2, 'tx', (l) => (second = l.fence));
      await delay(100);
      assert.equal(second, undefined, 'the second transaction waits');
      await c1.query('COMMIT');
      await pending;
      assert.ok(second !== undefined && second > first.fence);
      await c2.query('ROLLBACK');
      await c1.query('BEGIN');
      await assert.rejects(
        (async () => {
          await c2.query('BEGIN');
          await withTransactionLock(c2, 'tx', () => undefined);
          await withTransactionLock(c1, 'tx', () => undefined, { wait: 100 });
        })(),
        LockTimeoutError,
      );
      await c1.query('ROLLBACK');
      await c2.query('ROLLBACK');
      // Shared holders coexist.
      await c1.query('BEGIN');
      await c2.query('BEGIN');
      await withTransactionLock(c1, 'txs', () => undefined, { shared: true });
      await withTransactionLock(c2, 'txs', () => undefined, { shared: true, wait: 0 });
      await c1.query('COMMIT');
      await c2.query('COMMIT');
    } finally {
      c1.release();
      c2.release();
    }
  });

  test('outside a transaction it refuses, as the lock would end with its own statement', async () => {
    const pool = db.pool({ max: 1 });
    const c = await pool.connect();
    try {
      await assert.rejects(
        withTransactionLock(c, 'autocommit', () => undefined),
        /not in a transaction/,
      );
      await assert.rejects(
        withTransactionLock(c, '', () => undefined),
        LockArgumentError,
      );
      await assert.rejects(
        withTransactionLock(c, 'k', () => undefined, { wait: -1 }),
        LockArgumentError,
      );
      await assert.rejects(
        withTransactionLock({}, 'k', () => undefined),
        LockArgumentError,
      );
    } finally {
      c.release();
    }
  });
});
