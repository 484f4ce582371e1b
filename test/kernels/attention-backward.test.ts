/** Attention block backward vs finite differences and the naive float64 backward, whole and by key blocks. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { availableBackends } from '../../src/kernels/index.js';
import type { AttnBlockDims } from '../../src/kernels/types.js';
import type { Buf, DType } from '../../src/tensor/dtype.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { dot, expectAllClose, finiteDiff, randn } from '../helpers.js';
import { refAttentionBackward } from '../reference/attention.js';
import type { AttnCase, AttnInputs, AttnKernels } from './attention-util.js';
import { assertNoNaN, blocks, dims, emptyState, makeInputs, padded, putT, range, sliceT, standardCases } from './attention-util.js';

const H = 4;
const B = 2;

/** Forward, delta and backward of one whole call; gradients start from `init` (or zeros). */
function fullGrads(k: AttnKernels, inp: AttnInputs, dOut: Buf, d: AttnBlockDims, init?: { dq: Buf; dk: Buf; dv: Buf }) {
  const st = emptyState(inp.q instanceof Float64Array ? 'float64' : 'float32', d.B, d.Tq, d.H, d.D);
  k.attnForward(st, inp, d);
  const delta = allocBuf(inp.q instanceof Float64Array ? 'float64' : 'float32', d.B * d.Tq * d.H);
  k.attnDelta({ delta }, { dOut, out: st.out }, { B: d.B, T: d.Tq, H: d.H, D: d.D });
  const g = init ?? { dq: inp.q.map(() => 0), dk: inp.k.map(() => 0), dv: inp.v.map(() => 0) };
  k.attnBackward(g, { ...inp, dOut, out: st.out, lse: st.lse, delta }, d);
  return { ...g, ...st };
}

/** Small cases for finite differences: every gradient element is checked. */
function smallCases(): AttnCase[] {
  return [
    { name: 'causal self T=6', Tq: 6, Tk: 6, qPos: range(0, 6), kPos: range(0, 6), mask: { causal: true } },
    { name: 'non-causal Tq=5 Tk=7', Tq: 5, Tk: 7, qPos: range(0, 5), kPos: range(0, 7), mask: { causal: false } },
    { name: 'queries 8..12 vs keys 3..9, window 3/1', Tq: 5, Tk: 7, qPos: range(8, 5), kPos: range(3, 7), mask: { causal: false, windowLeft: 3, windowRight: 1 } },
    { name: 'padding, causal', Tq: 6, Tk: 7, qPos: padded(range(2, 6), 4, 1), kPos: padded(range(0, 7), 3, 2), mask: { causal: true } },
  ];
}

// The whole suite runs once per available backend (native f32 is checked; f64 stays on js).
for (const k of availableBackends() as AttnKernels[]) {
  describe(`attention backward [${k.name}]`, () => {
    for (const c of smallCases()) {
      for (const G of [1, 2, H]) {
        it(`${c.name}, G=${G}: dq, dk, dv vs central finite differences`, () => {
          const d = dims(c, B, H, G, 4);
          const inp = makeInputs('float64', c, d, 21 + G) as AttnInputs & { q: Float64Array; k: Float64Array; v: Float64Array };
          const w = randn('float64', inp.q.length, 5);
          const g = fullGrads(k, inp, w, d);
          const loss = () => {
            const st = emptyState('float64', B, c.Tq, H, d.D);
            k.attnForward(st, inp, d);
            return dot(w, st.out);
          };
          const tol = { rtol: 1e-6, atol: 1e-9 };
          expectAllClose(g.dq, finiteDiff(loss, inp.q), tol, 'dq', [B, c.Tq, H, d.D]);
          expectAllClose(g.dk, finiteDiff(loss, inp.k), tol, 'dk', [B, c.Tk, G, d.D]);
          expectAllClose(g.dv, finiteDiff(loss, inp.v), tol, 'dv', [B, c.Tk, G, d.D]);
        });
      }
    }

    standardCases().forEach((c, ci) => {
      [1, 2, H].forEach((G, gi) => {
        const D = [4, 8, 16][(ci + gi) % 3]!;
        // f32 once per case (G = 2): it checks rounding, the GQA sweep is done in f64.
        for (const dtype of (G === 2 ? ['float64', 'float32'] : ['float64']) as DType[]) {
          it(`${c.name}, G=${G}, D=${D}, ${dtype}: vs naive backward`, () => {
            const d = dims(c, B, H, G, D);
            const inp = makeInputs(dtype, c, d, 300 + 7 * ci + gi);
            const dOut = randn(dtype, inp.q.length, 99);
            const g = fullGrads(k, inp, dOut, d);
            const ref = refAttentionBackward({ ...inp, dOut }, d);
            // f32: dS = P(dP − delta) cancels, so an absolute floor below the O(1) gradients.
            const tol = dtype === 'float64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-5, atol: 1e-6 };
            for (const [name, got, want] of [['dq', g.dq, ref.dq], ['dk', g.dk, ref.dk], ['dv', g.dv, ref.dv]] as const) {
              assertNoNaN(got, name);
              expectAllClose(got, want, tol, `${name} (${dtype})`);
            }
          });
        }
      });
    });

    const blockCases = standardCases().filter((c) => /causal self|100\.\.229|padding|shuffled/.test(c.name));
    for (const c of blockCases) {
      it(`${c.name}: backward by key blocks with the merged out/lse equals the whole`, () => {
        const d = dims(c, B, H, 2, 8);
        const inp = makeInputs('float64', c, d, 41);
        const dOut = randn('float64', inp.q.length, 42);
        const whole = fullGrads(k, inp, dOut, d);
        const rowKV = d.G * d.D;
        for (const size of [1, 7, 16, 70]) {
          const parts = blocks(c.Tk, size);
          const kvOf = (j0: number, j1: number) => ({
            k: sliceT(inp.k, B, c.Tk, rowKV, j0, j1),
            v: sliceT(inp.v, B, c.Tk, rowKV, j0, j1),
            kPos: c.kPos.subarray(j0, j1),
          });
          // Forward folded block by block gives the final (out, lse) every block's backward needs.
          const st = emptyState('float64', B, c.Tq, H, d.D);
          for (const [j0, j1] of parts) k.attnForward(st, { ...inp, ...kvOf(j0, j1) }, { ...d, Tk: j1 - j0 });
          const delta = new Float64Array(B * c.Tq * H);
          k.attnDelta({ delta }, { dOut, out: st.out }, { B, T: c.Tq, H, D: d.D });
          const dq = new Float64Array(inp.q.length);
          const dk = new Float64Array(inp.k.length);
          const dv = new Float64Array(inp.v.length);
          for (const [j0, j1] of parts) {
            const n = j1 - j0;
            const gb = { dq, dk: new Float64Array(B * n * rowKV), dv: new Float64Array(B * n * rowKV) };
            k.attnBackward(gb, { ...inp, ...kvOf(j0, j1), dOut, out: st.out, lse: st.lse, delta }, { ...d, Tk: n });
            putT(dk, gb.dk, B, c.Tk, rowKV, j0, j1);
            putT(dv, gb.dv, B, c.Tk, rowKV, j0, j1);
          }
          const tol = { rtol: 1e-12, atol: 1e-12 };
          expectAllClose(dq, whole.dq, tol, `dq (blocks of ${size})`);
          expectAllClose(dk, whole.dk, tol, `dk (blocks of ${size})`);
          expectAllClose(dv, whole.dv, tol, `dv (blocks of ${size})`);
        }
      });
    }

    it('gradients accumulate (+=) into what is already there', () => {
      const c = standardCases()[0]!;
      for (const dtype of ['float64', 'float32'] as DType[]) {
        const d = dims(c, B, H, 2, 8);
        const inp = makeInputs(dtype, c, d, 51);
        const dOut = randn(dtype, inp.q.length, 52);
        const fresh = fullGrads(k, inp, dOut, d);
        const init = { dq: randn(dtype, inp.q.length, 53), dk: randn(dtype, inp.k.length, 54), dv: randn(dtype, inp.v.length, 55) };
        const base = { dq: init.dq.slice(), dk: init.dk.slice(), dv: init.dv.slice() };
        const acc = fullGrads(k, inp, dOut, d, init);
        const tol = dtype === 'float64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-6, atol: 1e-6 };
        for (const n of ['dq', 'dk', 'dv'] as const) {
          expectAllClose(acc[n], base[n].map((x, idx) => x + fresh[n][idx]!), tol, n);
        }
      }
    });

    it('fully masked and padded query rows get zero gradient and no NaN', () => {
      for (const name of ['keys after queries', 'padding in q and k']) {
        const c = standardCases().find((x) => x.name.startsWith(name))!;
        const d = dims(c, B, H, 2, 8);
        const inp = makeInputs('float64', c, d, 61);
        const dOut = randn('float64', inp.q.length, 62);
        const g = fullGrads(k, inp, dOut, d);
        for (const [n, x] of [['dq', g.dq], ['dk', g.dk], ['dv', g.dv], ['out', g.out]] as const) assertNoNaN(x, `${name}: ${n}`);
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < c.Tq; t++) {
            const blind = c.qPos[t]! < 0 || !c.kPos.some((kp) => kp >= 0 && kp <= c.qPos[t]!);
            if (!blind) continue;
            const o = (b * c.Tq + t) * H * d.D;
            assert.ok(g.dq.subarray(o, o + H * d.D).every((x) => x === 0), `${name}: dq row ${b},${t} must be 0`);
            assert.ok(g.out.subarray(o, o + H * d.D).every((x) => x === 0), `${name}: out row ${b},${t} must be 0`);
            assert.equal(g.lse[(b * c.Tq + t) * H], -Infinity);
          }
        }
        if (name.startsWith('keys after')) {
          assert.ok(g.dk.every((x) => x === 0) && g.dv.every((x) => x === 0), 'dk, dv must be 0');
        } else {
          // Padded keys receive nothing either.
          for (let b = 0; b < B; b++) {
            for (let j = 0; j < c.Tk; j++) {
              if (c.kPos[j]! >= 0) continue;
              const o = (b * c.Tk + j) * d.G * d.D;
              assert.ok(g.dk.subarray(o, o + d.G * d.D).every((x) => x === 0), `dk of padded key ${j}`);
              assert.ok(g.dv.subarray(o, o + d.G * d.D).every((x) => x === 0), `dv of padded key ${j}`);
            }
          }
        }
      }
    });
  });
}
