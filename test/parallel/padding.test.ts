/**
 * Sequences the layout does not split (S not a multiple of P or 2P): with `pad`, every scheme pads
 * S at the end to the next length it splits and marks the padding −1, and out, lse, dq, dk, dv of
 * the S real tokens equal single-device attention on those S tokens alone (f64 1e-10, f32 rel
 * 1e-5), causal and full masks, MHA and GQA, B ∈ {1, 2}, inproc and on the native kernels. Without
 * `pad` the same lengths are the clear error they were.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distributedAttention } from '../../src/parallel/distributed.js';
import { layoutFor, padLayout, paddedLength, shardTokens, unshardTokens, validateScheme } from '../../src/parallel/index.js';
import { expectAllClose, toF64 } from '../helpers.js';
import { close32, native, skipReason } from '../kernels/native-util.js';
import { caseName, kernelReference, makeInputs, tolFor, type Case, type Run, FIELDS, runLabel } from './harness.js';

const RUNS: Run[] = [
  ...[2, 3, 4].flatMap((P): Run[] => (['ring', 'zigzag', 'stripe', 'ulysses', 'allgather', 'rsa'] as const).map((scheme) => ({ scheme, P }))),
  { scheme: 'hybrid', P: 4, ulysses: 2 },
  { scheme: 'hybrid', P: 2, ulysses: 1 },
];

const label = runLabel;

async function check(run: Run, c: Case): Promise<void> {
  const x = makeInputs(c, 11 * c.S + c.G);
  const ref = kernelReference(c, x);
  const got = await distributedAttention({ ...run, ...x, B: c.B, S: c.S, H: c.H, G: c.G, D: c.D, causal: c.causal, pad: true });
  for (const f of FIELDS) {
    assert.equal(got[f]!.length, ref[f].length, `${label(run)} ${caseName(c)}: ${f} covers the real tokens only`);
    expectAllClose(got[f]!, ref[f], tolFor(c.dtype), `${label(run)} padded ${caseName(c)}: ${f}`);
  }
}

describe('padded sequences: S the layout does not split', () => {
  it('paddedLength: the next length each layout splits, S itself when it splits', () => {
    assert.equal(paddedLength('zigzag', 1001, 2), 1004);
    assert.equal(paddedLength('zigzag', 1004, 2), 1004);
    assert.equal(paddedLength('ulysses', 13, 4), 16);
    assert.equal(paddedLength('stripe', 7, 3), 9);
    assert.equal(paddedLength('hybrid', 13, 4, { ulysses: 2 }), 16);  // 2·ring = 4 and sp = 4
    assert.equal(paddedLength('hybrid', 13, 6, { ulysses: 3 }), 24);  // a multiple of 2·ring = 4 and of sp = 6
    assert.throws(() => paddedLength('hybrid', 13, 4, { ulysses: 3 }), /hybrid: ulysses=3 must be a positive divisor of sp=4/);
  });

  it('without pad, an S the layout does not split is the clear error it was', async () => {
    const x = makeInputs({ B: 1, S: 9, H: 2, G: 2, D: 4, causal: true, dtype: 'float64' });
    await assert.rejects(distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 9, H: 2, G: 2, D: 4 }), /zigzag: S=9 not divisible by 2\*sp=4/);
    assert.throws(() => validateScheme('ulysses', { S: 9, P: 2, H: 2, G: 2 }), /ulysses: S=9 not divisible by sp=2/);
  });

  it('padLayout: the last positions become −1; shard/unshard drop them', () => {
    const lay = padLayout(layoutFor('zigzag', 8, 2), 6);
    assert.deepEqual(Array.from(lay.positions(0)), [0, 1, -1, -1]);  // chunks 0 and 3
    assert.deepEqual(Array.from(lay.positions(1)), [2, 3, 4, 5]);
    assert.equal(lay.realS, 6);
    const x = Float64Array.from({ length: 6 * 2 }, (_, i) => i + 1);  // [B=1, S=6, row=2]
    const shards = [0, 1].map((r) => shardTokens(lay, x, 1, 2, r));
    assert.deepEqual(Array.from(shards[0]!), [1, 2, 3, 4, 0, 0, 0, 0]);
    assert.deepEqual(Array.from(unshardTokens(lay, shards, 1, 2)), Array.from(x));
    assert.throws(() => padLayout(layoutFor('zigzag', 8, 2), 9), /real length 9 outside \[1, S=8\]/);
  });

  for (const run of RUNS) {
    it(`${label(run)}: f64, causal/full, G ∈ {1, H}, B ∈ {1, 2}, S just past and just short of a split`, async () => {
      let ran = 0;
      for (const causal of [true, false]) {
        const H = run.P === 3 ? 6 : 4;
        for (const G of [1, H]) {
          for (const B of [1, 2]) {
            for (const S of [4 * run.P + 1, 6 * run.P - 1]) {
              const c: Case = { B, S, H, G, D: 4, causal, dtype: 'float64' };
              if (run.scheme === 'ulysses' && G % run.P !== 0 && run.P % G !== 0) continue;
              if (run.scheme === 'hybrid' && G % run.ulysses! !== 0 && run.ulysses! % G !== 0) continue;
              await check(run, c);
              ran++;
            }
          }
        }
      }
      assert.ok(ran >= 8, `${label(run)}: only ${ran} cases ran`);
    });
  }

  it('on the threads transport too: zigzag P=2, S=13 (float64)', async () => {
    const c: Case = { B: 1, S: 13, H: 4, G: 2, D: 4, causal: true, dtype: 'float64' };
    const x = makeInputs(c, 3);
    const ref = kernelReference(c, x);
    const got = await distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 13, H: 4, G: 2, D: 4, pad: true, transport: 'threads' });
    for (const f of FIELDS) expectAllClose(got[f]!, ref[f], tolFor('float64'), `zigzag threads padded: ${f}`);
  });

  it('float32 on the native kernels: zigzag, ulysses, allgather at P = 2 and 3, against float64', async (t) => {
    if (!native) return t.skip(`native backend unavailable: ${skipReason}`);
    for (const scheme of ['zigzag', 'ulysses', 'allgather'] as const) {
      for (const P of [2, 3]) {
        for (const causal of [true, false]) {
          const c: Case = { B: 1, S: 16 * P + 3, H: P === 3 ? 3 : 4, G: 1, D: 32, causal, dtype: 'float32' };
          const x = makeInputs(c, 5 + P);
          const ref = kernelReference({ ...c, dtype: 'float64' }, { q: toF64(x.q), k: toF64(x.k), v: toF64(x.v), dOut: toF64(x.dOut) });
          const got = await distributedAttention({ scheme, P, ...x, B: c.B, S: c.S, H: c.H, G: c.G, D: c.D, causal, pad: true, kernels: native });
          for (const f of FIELDS) close32(got[f]!, ref[f], `${scheme} P=${P} native padded ${caseName(c)}: ${f}`);
        }
      }
    }
  });
});
