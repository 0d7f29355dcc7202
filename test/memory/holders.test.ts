// The memory store's holder set: the first holder lives in fields, the rest in a Map that opens only
// for a second one. Whatever the order of arrivals, departures and expiries, it must answer like a Map.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Holders, type Holder } from '../../src/backends/memory/holders.js';

const h = (fence: number, deadline: number): Holder => ({ fence: BigInt(fence), deadline });

test('several holders come and go in any order, and the set answers as a Map would', () => {
  const set = new Holders();
  const model = new Map<string, Holder>();
  const put = (owner: string, holder: Holder): void => {
    set.set(owner, holder);
    model.set(owner, holder);
  };
  const same = (): void => {
    assert.equal(set.size, model.size);
    assert.deepEqual(new Map(set.list()), model);
    for (const owner of ['a', 'b', 'c', 'd', 'x']) assert.equal(set.get(owner), model.get(owner));
  };
  for (const [owner, fence] of [
    ['a', 1],
    ['b', 2],
    ['c', 3],
  ] as const) {
    put(owner, h(fence, 100));
    same();
  }
  put('b', h(9, 200)); // a holder renewed keeps its place
  same();
  // The first one leaves: another takes its place, and the set still finds every holder.
  assert.equal(set.delete('a'), model.delete('a'));
  same();
  assert.equal(set.delete('a'), false);
  put('d', h(4, 50));
  same();
  assert.equal(set.soonest(), 50);
  for (const owner of ['c', 'b', 'd']) {
    assert.equal(set.delete(owner), model.delete(owner));
    same();
  }
  assert.equal(set.soonest(), Infinity);
});

test('expiry drops exactly the holders due, the first one among them or not', () => {
  const set = new Holders();
  set.set('first', h(1, 10));
  set.set('second', h(2, 30));
  set.set('third', h(3, 10));
  assert.equal(set.dropExpired(5), false);
  assert.equal(set.size, 3);
  assert.equal(set.dropExpired(10), true);
  assert.deepEqual(set.list(), [['second', h(2, 30)]]);
  assert.equal(set.get('first'), undefined);
  assert.equal(set.dropExpired(29), false);
  assert.equal(set.dropExpired(30), true);
  assert.equal(set.size, 0);
  set.set('again', h(4, 40)); // an emptied set takes a new first holder
  assert.deepEqual(set.list(), [['again', h(4, 40)]]);
});
