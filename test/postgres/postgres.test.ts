// The PostgreSQL backend's own behaviour and faults, against real servers: the machine's (through a
// throw-away database) and, for restarts, a private one started here.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { advisoryKey, postgresBackend, withTransactionLock } from '../../src/backends/postgres/index.js';
import { LockAcquisitionError, LockArgumentError, LockExpiredError, LockTimeoutError, Locksmith, type Lock } from '../../src/index.js';
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
    WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
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
  const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'child.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
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
      assert.deepEqual((await advisory()).filter((l) => l.key === '42').map((l) => l.granted), [true]);
      await lock.release();
    } finally {
      c.release();
    }
  });

  test('fences survive a sequence reset (what a crash does to an unlogged one)', async () => {
    const locks = locksmith(db.pool({ max: 2 }));
    const before = await locks.acquire('reset');
    await before.release();
    await db.query(`SELECT setval('locksmith_fence', 1)`);
    const after = await locks.acquire('reset');
    assert.ok(after.fence > before.fence, `${after.fence} after ${before.fence}`);
    const next = await locks.acquire('reset:other');
    assert.ok(next.fence > after.fence, 'and it counts on from there');
    await Promise.all([after.release(), next.release()]);
  });

  test('a dropped fence sequence is made again by the next grant', async () => {
    const locks = locksmith(db.pool({ max: 2 }));
    const before = await locks.acquire('dropped');
    await before.release();
    await db.query('DROP SEQUENCE locksmith_fence');
    const after = await locks.acquire('dropped', { wait: 0 });
    assert.ok(after.fence > before.fence, 'reseeded from the clock');
    await after.release();
  });

  test('bad options are LockArgumentErrors', () => {
    const pool = db.pool({ max: 1 });
    assert.throws(() => postgresBackend({} as never), LockArgumentError);
    assert.throws(() => postgresBackend({ pool: { query() {} } }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, sequence: 'x; drop table y' }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, sequence: 'a.b.c' }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, connectTimeout: -1 }), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, bogus: 1 } as never), LockArgumentError);
    assert.throws(() => postgresBackend({ pool, key: 42 } as never), LockArgumentError);
  });
});

describe('connections', () => {
  test('a held lock pins one connection; a pool of 1 fails a nested acquire at once and clearly', async () => {
    const pool = db.pool({ max: 1 });
    const locks = locksmith(pool);
    const outer = await locks.acquire('nested:a', { owner: 'me', reentrant: true });
    const t0 = performance.now();
    await assert.rejects(locks.acquire('nested:b'), (e: unknown) => {
      assert.ok(e instanceof LockAcquisitionError);
      assert.match(e.message, /all 1 connections of the pool are pinned/);
      return true;
    });
    assert.ok(performance.now() - t0 < 500, 'no hang waiting for the pool');
    // Re-entering the same lock needs no connection.
    const inner = await locks.acquire('nested:a', { owner: 'me', reentrant: true });
    await inner.release();
    await outer.release();
    const next = await locks.acquire('nested:b');
    await next.release();
  });

  test("connections go back to the pool with the session's settings as they were", async () => {
    const pool = db.pool({ max: 4 });
    const setup = await pool.connect();
    await setup.query("SET application_name = 'mine'");
    setup.release();
    const locks = locksmith(pool);
    const lock = await locks.acquire('settings', { ttl: 4_000 });
    const named = await db.query(`SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'lse:%'`);
    assert.match(String((named.rows[0] as { application_name?: string } | undefined)?.application_name), new RegExp(`^lse:fa0:${lock.fence.toString(16)}:${lock.owner.replace('.', '\\.')}$`));
    await lock.release();
    await locks.close(); // gives spares back at once
    const c = await pool.connect();
    try {
      const r = await c.query("SELECT current_setting('application_name') AS app, current_setting('idle_session_timeout') AS idle");
      assert.deepEqual(r.rows[0], { app: 'mine', idle: '0' });
    } finally {
      c.release();
    }
  });

  test('a pool busy with other work fails after connectTimeout, not never', async () => {
    const pool = db.pool({ max: 1 });
    const other = await pool.connect();
    try {
      const locks = locksmith(pool, {}, { connectTimeout: 200 });
      await assert.rejects(locks.acquire('busy-pool'), /no connection from the pool within 200 ms/);
    } finally {
      other.release();
    }
  });

  test('waits queue on the server, not by polling; an aborted wait leaves the queue', async () => {
    const [a, b] = [locksmith(db.pool({ max: 3 })), locksmith(db.pool({ max: 3 }), { backoff: { initial: 60_000, max: 60_000 } })];
    const key = advisoryKey('queued').toString();
    const lock = await a.acquire('queued');
    const controller = new AbortController();
    const waiting = b.acquire('queued', { wait: 30_000, signal: controller.signal });
    await until(async () => (await advisory()).some((l) => l.key === key && !l.granted));
    controller.abort(new Error('enough'));
    await assert.rejects(waiting, /enough/);
    await until(async () => !(await advisory()).some((l) => l.key === key && !l.granted), 2_000);
    // A second waiter is handed the lock by the server at release: no poll (the backoff is a minute).
    const next = b.acquire('queued', { wait: 30_000 });
    await until(async () => (await advisory()).some((l) => l.key === key && !l.granted));
    const released = performance.now();
    await lock.release();
    const got = await next;
    assert.ok(performance.now() - released < 1_000);
    assert.ok(got.fence > lock.fence);
    await got.release();
  });

  test('after a mix of grants, waits, tries, timeouts and aborts, close() leaves no connection checked out', async () => {
    const pools = [db.pool({ max: 8 }), db.pool({ max: 8 })];
    const [a, b] = pools.map((p) => new Locksmith(postgresBackend({ pool: p }), { ttl: 2_000, wait: 2_000 }));
    const held = await a!.acquire('mix');
    const waits = [
      b!.acquire('mix', { wait: 150 }).catch(() => 'timeout'),
      b!.acquire('mix', { signal: AbortSignal.timeout(100) }).catch(() => 'aborted'),
      b!.tryAcquire('mix'),
      b!.read('mix:rw', { wait: 100 }),
      b!.semaphore('mix:sem', { limit: 1 }).acquire({ wait: 100 }),
      b!.acquire('mix', { wait: 60_000 }), // still waiting on the server at close()
    ];
    const settled = await Promise.allSettled(waits.slice(0, 5));
    assert.deepEqual(settled.slice(0, 3).map((r) => (r.status === 'fulfilled' ? r.value : 'rejected')), ['timeout', 'aborted', null]);
    await b!.inspect('mix');
    await held.release();
    const late = (await waits[5]) as Lock;
    await late.release();
    const blocker = await a!.acquire('mix:never');
    const stuck = b!.acquire('mix:never', { wait: 60_000 });
    void stuck.catch(() => undefined);
    await until(async () => (await advisory()).some((l) => !l.granted));
    await Promise.all([a!.close(), b!.close()]);
    await blocker.release().catch(() => undefined);
    for (const p of pools) assert.equal(p.totalCount - p.idleCount, 0, 'a connection is still checked out');
  });

  test('permits take slot keys in order, one lock each', async () => {
    const locks = locksmith(db.pool({ max: 5 }));
    const sem = locks.semaphore('slots', { limit: 3 });
    const p1 = await sem.acquire();
    const p2 = await sem.acquire();
    const mine = (await advisory()).filter((l) => l.granted);
    assert.equal(mine.length, 2);
    assert.equal(await sem.held(), 2);
    const info = await locks.inspect('slots');
    assert.equal(info?.mode, 'shared');
    assert.deepEqual(new Set(info?.holders.map((h) => h.owner)), new Set([p1.owner, p2.owner]));
    await p1.release();
    const p3 = await sem.acquire();
    assert.equal((await advisory()).filter((l) => l.granted).length, 2, 'the freed first slot was reused');
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
      await assert.rejects(withTransactionLock(c, 'autocommit', () => undefined), /not in a transaction/);
      await assert.rejects(withTransactionLock(c, '', () => undefined), LockArgumentError);
      await assert.rejects(withTransactionLock(c, 'k', () => undefined, { wait: -1 }), LockArgumentError);
      await assert.rejects(withTransactionLock({}, 'k', () => undefined), LockArgumentError);
    } finally {
      c.release();
    }
  });
});
