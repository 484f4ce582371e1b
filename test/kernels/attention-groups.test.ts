/**
 * AttnBlockDims.groups: a call restricted to kv groups [from, to) computes exactly those heads —
 * bit for bit what the whole call gives them — and leaves every other head of out, lse, dq, dk,
 * dv as it was. Ranks of Ulysses' zero-copy path each run their own groups on shared tensors.
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
  describe(`attention kv group range [${k.name}]`, () => {
    const dtypes: DType[] = k.name === 'native' ? ['float32'] : ['float64', 'float32'];
    const cases = standardCases().slice(0, 4);
    for (const dtype of dtypes) {
      for (const G of [2, 4]) {
        cases.forEach((c, ci) => {
          it(`${c.name}, G=${G}, ${dtype}: split by groups equals the whole call, other heads untouched`, () => {
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

            // group by group into one state; a sentinel shows what a call must not touch
            const parts = emptyState(dtype, B, c.Tq, H, D);
            const gp = { dq: allocBuf(dtype, inp.q.length), dk: allocBuf(dtype, inp.k.length), dv: allocBuf(dtype, inp.v.length) };
            for (let g = 0; g < G; g++) {
              const probe = emptyState(dtype, B, c.Tq, H, D);
              probe.out.fill(7);
              const pg = { dq: allocBuf(dtype, inp.q.length).fill(5), dk: allocBuf(dtype, inp.k.length).fill(5), dv: allocBuf(dtype, inp.v.length).fill(5) };
              const dg = { ...d, groups: { from: g, to: g + 1 } };
              k.attnForward(probe, inp, dg);
              k.attnBackward(pg, { ...inp, dOut, out: whole.out, lse: whole.lse, delta }, dg);
              const rep = H / G;
              const ownHead = (i: number, heads: number, row: number) => Math.floor(i / row) % heads;
              for (let i = 0; i < probe.out.length; i++) {
                const h = ownHead(i, H, D);
                const mine = Math.floor(h / rep) === g;
                if (mine) {
                  parts.out[i] = probe.out[i]!;
                  gp.dq[i] = pg.dq[i]! - 5;
                } else {
                  assert.equal(probe.out[i], 7, `out[${i}] (head ${h}) written by group ${g}`);
                  assert.equal(pg.dq[i], 5, `dq[${i}] (head ${h}) written by group ${g}`);
                }
              }
              for (let i = 0; i < probe.lse.length; i++) {
                const mine = Math.floor((i % H) / rep) === g;
                if (mine) parts.lse[i] = probe.lse[i]!;
                else assert.equal(probe.lse[i], -Infinity, `lse[${i}] written by group ${g}`);
              }
              for (let i = 0; i < pg.dk.length; i++) {
                if (ownHead(i, G, D) === g) {
                  gp.dk[i] = pg.dk[i]! - 5;
                  gp.dv[i] = pg.dv[i]! - 5;
                } else {
                  assert.equal(pg.dk[i], 5, `dk[${i}] written by group ${g}`);
                  assert.equal(pg.dv[i], 5, `dv[${i}] written by group ${g}`);
                }
              }
            }
            // Bitwise for the forward; the backward's accumulation onto 5 and back off rounds in f32.
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
            expectAllClose(parts.out, ref.out, rt, 'out by groups');
            expectAllClose(parts.lse, ref.lse, rt, 'lse by groups');
            for (const [name, a] of [['dq', gp.dq], ['dk', gp.dk], ['dv', gp.dv]] as const) expectAllClose(a, refG[name], dtype === 'float64' ? rt : { rtol: 1e-5, atol: 2e-6 }, `${name} by groups`);
          });
        });
      }
    }

    it('an empty range computes nothing; one outside [0, G) is a RangeError naming it', () => {
      const c = standardCases()[0]!;
      const d = dims(c, 1, H, 2, D);
      const inp = makeInputs('float32', c, d, 9);
      const st = emptyState('float32', 1, c.Tq, H, D);
      st.out.fill(3);
      k.attnForward(st, inp, { ...d, groups: { from: 1, to: 1 } });
      assert.ok(st.out.every((x) => x === 3) && st.lse.every((x) => x === -Infinity));
      assert.throws(() => k.attnForward(st, inp, { ...d, groups: { from: 1, to: 3 } }), (e: Error) => e instanceof RangeError && /\[1, 3\)/.test(e.message));
      assert.throws(() => k.attnForward(st, inp, { ...d, groups: { from: 2, to: 1 } }), RangeError);
    });
  });
}
