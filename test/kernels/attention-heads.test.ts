/**
 * AttnBlockDims.heads: a call restricted to query heads [from, to) computes exactly those heads of
 * out, lse, dq — bit for bit what the whole call gives them in the forward — adds only their
 * terms to dk, dv, and leaves every other head as it was. Chunks of one head, of two, and of a
 * whole kv group, so that some chunks split a group: their dk, dv terms sum to the whole call's.
 * Ranks of Ulysses' shared path each run their own chunks on shared tensors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { availableBackends } from '../../src/kernels/index.js';
import type { AttnBlockDims } from '../../src/kernels/types.js';
import type { Buf, DType } from '../../src/tensor/dtype.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { expectAllClose, randn } from '../helpers.js';
import { refAttention, refAttentionBackward } from '../reference/attention.js';
import type { AttnKernels } from './attention-util.js';
import { dims, emptyState, makeInputs, standardCases } from './attention-util.js';

const B = 2;
const H = 4;
const D = 8;

for (const k of availableBackends() as AttnKernels[]) {
  describe(`attention query head range [${k.name}]`, () => {
    const dtypes: DType[] = k.name === 'native' ? ['float32'] : ['float64', 'float32'];
    const cases = standardCases().slice(0, 4);
    for (const dtype of dtypes) {
      for (const [G, size] of [[1, 1], [1, 2], [2, 1], [2, 2], [4, 1]] as const) {
        cases.forEach((c, ci) => {
          it(`${c.name}, G=${G}, chunks of ${size} heads, ${dtype}: the chunks equal the whole call, other heads untouched`, () => {
            const d = dims(c, B, H, G, D);
            const inp = makeInputs(dtype, c, d, 300 + ci * 11 + G);
            const dOut = randn(dtype, d.B * d.Tq * H * D, 400 + ci);
            // the whole call, from the empty state
            const whole = emptyState(dtype, B, c.Tq, H, D);
            k.attnForward(whole, inp, d);
            const delta = allocBuf(dtype, B * c.Tq * H);
            k.attnDelta({ delta }, { dOut, out: whole.out }, { B, T: c.Tq, H, D });
            const gw = { dq: allocBuf(dtype, inp.q.length), dk: allocBuf(dtype, inp.k.length), dv: allocBuf(dtype, inp.v.length) };
            k.attnBackward(gw, { ...inp, dOut, out: whole.out, lse: whole.lse, delta }, d);

            // chunk by chunk into one state (dk, dv: summed over the chunks); a sentinel shows
            // what a call must not touch
            const parts = emptyState(dtype, B, c.Tq, H, D);
            const gp = { dq: allocBuf(dtype, inp.q.length), dk: allocBuf(dtype, inp.k.length), dv: allocBuf(dtype, inp.v.length) };
            const rep = H / G;
            const ownHead = (i: number, heads: number, row: number) => Math.floor(i / row) % heads;
            for (let h0 = 0; h0 < H; h0 += size) {
              const mine = (h: number) => h >= h0 && h < h0 + size;
              const probe = emptyState(dtype, B, c.Tq, H, D);
              probe.out.fill(7);
              const pg = { dq: allocBuf(dtype, inp.q.length).fill(5), dk: allocBuf(dtype, inp.k.length).fill(5), dv: allocBuf(dtype, inp.v.length).fill(5) };
              const dh = { ...d, heads: { from: h0, to: h0 + size } };
              k.attnForward(probe, inp, dh);
              k.attnBackward(pg, { ...inp, dOut, out: whole.out, lse: whole.lse, delta }, dh);
              for (let i = 0; i < probe.out.length; i++) {
                const h = ownHead(i, H, D);
                if (mine(h)) {
                  parts.out[i] = probe.out[i]!;
                  gp.dq[i] = pg.dq[i]! - 5;
                } else {
                  assert.equal(probe.out[i], 7, `out[${i}] (head ${h}) written by heads [${h0}, ${h0 + size})`);
                  assert.equal(pg.dq[i], 5, `dq[${i}] (head ${h}) written by heads [${h0}, ${h0 + size})`);
                }
              }
              for (let i = 0; i < probe.lse.length; i++) {
                if (mine(i % H)) parts.lse[i] = probe.lse[i]!;
                else assert.equal(probe.lse[i], -Infinity, `lse[${i}] written by heads [${h0}, ${h0 + size})`);
              }
              for (let i = 0; i < pg.dk.length; i++) {
                const g = ownHead(i, G, D);
                if (h0 < (g + 1) * rep && h0 + size > g * rep) {  // the chunk holds heads of group g
                  gp.dk[i] = gp.dk[i]! + (pg.dk[i]! - 5);
                  gp.dv[i] = gp.dv[i]! + (pg.dv[i]! - 5);
                } else {
                  assert.equal(pg.dk[i], 5, `dk[${i}] (group ${g}) written by heads [${h0}, ${h0 + size})`);
                  assert.equal(pg.dv[i], 5, `dv[${i}] (group ${g}) written by heads [${h0}, ${h0 + size})`);
                }
              }
            }
            // Bitwise for the forward; the backward's accumulation onto 5 and back off, and the
            // chunks' partial dk, dv sums, round in f32.
            assert.deepEqual(parts.out, whole.out);
            assert.deepEqual(parts.lse, whole.lse);
            const tol = dtype === 'float64' ? 1e-12 : 1e-5;
            for (const [name, a, b] of [['dq', gp.dq, gw.dq], ['dk', gp.dk, gw.dk], ['dv', gp.dv, gw.dv]] as const) {
              for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!)), `${name}[${i}]: ${a[i]} vs ${b[i]}`);
            }
            // and the assembled parts against the naive float64 reference
            const ref = refAttention(inp, d);
            const refG = refAttentionBackward({ ...inp, dOut }, d);
            const rt = dtype === 'float64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-5, atol: 1e-6 };
            expectAllClose(parts.out, ref.out, rt, 'out by chunks');
            expectAllClose(parts.lse, ref.lse, rt, 'lse by chunks');
            for (const [name, a] of [['dq', gp.dq], ['dk', gp.dk], ['dv', gp.dv]] as const) expectAllClose(a, refG[name], dtype === 'float64' ? rt : { rtol: 1e-5, atol: 2e-6 }, `${name} by chunks`);
          });
        });
      }
    }

    it('an empty range computes nothing; one outside [0, H) is a RangeError naming it', () => {
      const c = standardCases()[0]!;
      const d = dims(c, 1, H, 2, D);
      const inp = makeInputs('float32', c, d, 9);
      const st = emptyState('float32', 1, c.Tq, H, D);
      st.out.fill(3);
      k.attnForward(st, inp, { ...d, heads: { from: 1, to: 1 } });
      assert.ok(st.out.every((x) => x === 3) && st.lse.every((x) => x === -Infinity));
      assert.throws(() => k.attnForward(st, inp, { ...d, heads: { from: 1, to: 5 } }), (e: Error) => e instanceof RangeError && /\[1, 5\)/.test(e.message));
      assert.throws(() => k.attnForward(st, inp, { ...d, heads: { from: 2, to: 1 } }), RangeError);
    });
  });
}
