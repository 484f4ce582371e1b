/** DeviceMesh layout (pure) and launcher argument checks on inproc. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeviceMesh, meshShape, runRanks } from '../../src/comm/index.js';

describe('DeviceMesh', () => {
  it('rejects a shape that does not match the world', async () => {
    assert.throws(() => meshShape({ dp: 2, sp: 4, tp: 1 }, 6), { message: 'dp(2)*sp(4)*tp(1) != world(6)' });
    assert.throws(() => meshShape({ dp: 1, sp: 4, tp: 1, ulysses: 3 }, 4), /ulysses\(3\)\*ring\(\?\) != sp\(4\)/);
    await assert.rejects(runRanks(6, async (w) => DeviceMesh.create({ dp: 2, sp: 4, tp: 1 }, w)), { message: 'rank 0 failed: dp(2)*sp(4)*tp(1) != world(6)' });
  });

  it('defaults: unsplit sp is a ring, missing axes are 1', () => {
    assert.deepEqual(meshShape({ sp: 4 }, 4), { dp: 1, sp: 4, tp: 1, ulysses: 1, ring: 4 });
    assert.deepEqual(meshShape({ dp: 2, sp: 4, ring: 2 }, 8), { dp: 2, sp: 4, tp: 1, ulysses: 2, ring: 2 });
  });

  it('dp2 × (ring2 × ulysses2) × tp1: ulysses is the contiguous inner factor', async () => {
    const res = await runRanks(8, async (w) => {
      const m = DeviceMesh.create({ dp: 2, sp: 4, tp: 1, ulysses: 2, ring: 2 }, w);
      return { c: m.coords, dp: m.group('dp').ranks, sp: m.group('sp').ranks, u: m.group('ulysses').ranks, r: m.group('ring').ranks, next: m.ringNext, prev: m.ringPrev };
    });
    assert.deepEqual(res[5], { c: { dp: 1, sp: 1, tp: 0, ulysses: 1, ring: 0 }, dp: [1, 5], sp: [4, 5, 6, 7], u: [4, 5], r: [5, 7], next: 1, prev: 1 });
    assert.deepEqual(res[2]!.u, [2, 3]);
    assert.deepEqual(res[2]!.r, [0, 2]);
  });

  it('dp2 × sp2 × tp2: tp is innermost', async () => {
    const res = await runRanks(8, async (w) => {
      const m = DeviceMesh.create({ dp: 2, sp: 2, tp: 2 }, w);
      return [m.group('tp').ranks, m.group('sp').ranks, m.group('dp').ranks, m.rankAt(m.coords)];
    });
    assert.deepEqual(res[3], [[2, 3], [1, 3], [3, 7], 3]);
  });
});

describe('runRanks arguments', () => {
  it('threads needs an entry, not a function', async () => {
    await assert.rejects(runRanks(2, async () => 1, { transport: 'threads' }), /needs an entry/);
  });
  it('newGroup must be called with the same list on every rank', async () => {
    await assert.rejects(runRanks(2, async (w) => w.newGroup(w.rank === 0 ? [0, 1] : [1, 0], 'x')), /newGroup #1: rank 1 passed \[1, 0\]/);
  });
  it('non-members get a handle whose calls reject', async () => {
    const res = await runRanks(3, async (w) => {
      const g = w.newGroup([0, 1], 'pair');
      if (g.rank >= 0) {
        await g.allReduce(new Float64Array(1));
        return 'member';
      }
      return g.barrier().then(() => 'no error', (e: Error) => e.message);
    });
    assert.deepEqual(res, ['member', 'member', 'barrier #0 on axis pair: rank 2 is not a member of group [0, 1]']);
  });
});
