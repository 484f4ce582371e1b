/** Attention block forward and merge vs the naive float64 reference, whole and block by block. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { availableBackends } from '../../src/kernels/index.js';
import type { DType } from '../../src/tensor/dtype.js';
import { expectAllClose } from '../helpers.js';
import { refAttention } from '../reference/attention.js';
import type { AttnKernels } from './attention-util.js';
import { assertNoNaN, blocks, dims, emptyState, makeInputs, putT, range, sliceT, standardCases, tolFor } from './attention-util.js';

const DTYPES: DType[] = ['float64', 'float32'];
const H = 4;
const B = 2;

// The whole suite runs once per available backend (native f32 is checked; f64 stays on js).
for (const k of availableBackends() as AttnKernels[]) {
  describe(`attention forward [${k.name}]`, () => {
    standardCases().forEach((c, ci) => {
      [1, 2, H].forEach((G, gi) => {
        const D = [4, 8, 16][(ci + gi) % 3]!;
        for (const dtype of DTYPES) {
          it(`${c.name}, G=${G}, D=${D}, ${dtype}`, () => {
            const d = dims(c, B, H, G, D);
            const inp = makeInputs(dtype, c, d, 100 + 7 * ci + gi);
            const st = emptyState(dtype, B, c.Tq, H, D);
            k.attnForward(st, inp, d);
            const ref = refAttention(inp, d);
            assertNoNaN(st.out, 'out');
            expectAllClose(st.out, ref.out, tolFor(dtype), 'out', [B, c.Tq, H, D]);
            expectAllClose(st.lse, ref.lse, tolFor(dtype), 'lse', [B, c.Tq, H]);
          });
        }
      });
    });
  });

  describe(`attention block by block [${k.name}]`, () => {
    const cases = standardCases().filter((c) => /causal self|100\.\.229|window left=5|padding|shuffled/.test(c.name));
    for (const c of cases) {
      const d = dims(c, B, H, 2, 8);
      const sizes = [1, 3, 7, 16, 50, 70, c.Tk];
      it(`${c.name}: keys folded in blocks of ${sizes.join(', ')}`, () => {
        const inp = makeInputs('float64', c, d, 7);
        const ref = refAttention(inp, d);
        for (const size of sizes) {
          const st = emptyState('float64', B, c.Tq, H, d.D);
          for (const [j0, j1] of blocks(c.Tk, size)) {
            const kb = sliceT(inp.k, B, c.Tk, d.G * d.D, j0, j1);
            const vb = sliceT(inp.v, B, c.Tk, d.G * d.D, j0, j1);
            k.attnForward(st, { ...inp, k: kb, v: vb, kPos: c.kPos.subarray(j0, j1) }, { ...d, Tk: j1 - j0 });
          }
          expectAllClose(st.out, ref.out, tolFor('float64'), `out (blocks of ${size})`, [B, c.Tq, H, d.D]);
          expectAllClose(st.lse, ref.lse, tolFor('float64'), `lse (blocks of ${size})`);
        }
      });
      it(`${c.name}: key blocks in fresh states, merged in reverse order`, () => {
        for (const dtype of DTYPES) {
          const inp = makeInputs(dtype, c, d, 8);
          const ref = refAttention(inp, d);
          for (const size of [3, 16, 70]) {
            const acc = emptyState(dtype, B, c.Tq, H, d.D);
            for (const [j0, j1] of blocks(c.Tk, size).reverse()) {
              const part = emptyState(dtype, B, c.Tq, H, d.D);
              const kb = sliceT(inp.k, B, c.Tk, d.G * d.D, j0, j1);
              const vb = sliceT(inp.v, B, c.Tk, d.G * d.D, j0, j1);
              k.attnForward(part, { ...inp, k: kb, v: vb, kPos: c.kPos.subarray(j0, j1) }, { ...d, Tk: j1 - j0 });
              k.attnMerge(acc, { out2: part.out, lse2: part.lse }, { B, T: c.Tq, H, D: d.D });
            }
            expectAllClose(acc.out, ref.out, tolFor(dtype), `${dtype} out (merged blocks of ${size})`, [B, c.Tq, H, d.D]);
            expectAllClose(acc.lse, ref.lse, tolFor(dtype), `${dtype} lse (merged blocks of ${size})`);
          }
        }
      });
      it(`${c.name}: query blocks × key blocks`, () => {
        const inp = makeInputs('float64', c, d, 9);
        const ref = refAttention(inp, d);
        for (const [qSize, kSize] of [[5, 7], [64, 16], [33, 200]] as const) {
          const out = new Float64Array(ref.out.length);
          const lse = new Float64Array(ref.lse.length);
          for (const [i0, i1] of blocks(c.Tq, qSize)) {
            const Tq = i1 - i0;
            const st = emptyState('float64', B, Tq, H, d.D);
            const qb = sliceT(inp.q, B, c.Tq, H * d.D, i0, i1);
            for (const [j0, j1] of blocks(c.Tk, kSize)) {
              const kb = sliceT(inp.k, B, c.Tk, d.G * d.D, j0, j1);
              const vb = sliceT(inp.v, B, c.Tk, d.G * d.D, j0, j1);
              const bi = { q: qb, k: kb, v: vb, qPos: c.qPos.subarray(i0, i1), kPos: c.kPos.subarray(j0, j1) };
              k.attnForward(st, bi, { ...d, Tq, Tk: j1 - j0 });
            }
            putT(out, st.out, B, c.Tq, H * d.D, i0, i1);
            putT(lse, st.lse, B, c.Tq, H, i0, i1);
          }
          expectAllClose(out, ref.out, tolFor('float64'), `out (q ${qSize} × k ${kSize})`, [B, c.Tq, H, d.D]);
          expectAllClose(lse, ref.lse, tolFor('float64'), `lse (q ${qSize} × k ${kSize})`);
        }
      });
    }
  });

  describe(`attention masked rows and merge [${k.name}]`, () => {
    const c = standardCases().find((x) => x.name.startsWith('keys after queries'))!;
    for (const dtype of DTYPES) {
      it(`fully masked block gives out = 0, lse = -inf (${dtype})`, () => {
        const d = dims(c, B, H, 2, 8);
        const st = emptyState(dtype, B, c.Tq, H, 8);
        k.attnForward(st, makeInputs(dtype, c, d, 3), d);
        assert.ok(st.out.every((x) => x === 0), 'out must be exactly 0');
        assert.ok(st.lse.every((x) => x === -Infinity), 'lse must be -inf');
      });
      it(`a block with no allowed key leaves the state unchanged (${dtype})`, () => {
        // Queries 30..99 vs keys 60..139 (causal): rows 30..59 see nothing; fold it into a real state.
        const sc = standardCases().find((x) => x.name.startsWith('keys partly after'))!;
        const d = dims(sc, B, H, 1, 4);
        const st = emptyState(dtype, B, sc.Tq, H, 4);
        const earlier = { ...sc, Tk: 30, kPos: range(0, 30) };
        k.attnForward(st, makeInputs(dtype, earlier, { ...d, Tk: 30 }, 4), { ...d, Tk: 30 });
        const before = { out: st.out.slice(), lse: st.lse.slice() };
        k.attnForward(st, makeInputs(dtype, sc, d, 5), d);
        const rowsBlind = 30 * H; // per batch: tokens 0..29 of the block, all heads
        for (let b = 0; b < B; b++) {
          const r0 = b * sc.Tq * H;
          assert.deepEqual(st.lse.subarray(r0, r0 + rowsBlind), before.lse.subarray(r0, r0 + rowsBlind));
          assert.deepEqual(st.out.subarray(r0 * 4, (r0 + rowsBlind) * 4), before.out.subarray(r0 * 4, (r0 + rowsBlind) * 4));
        }
        assert.notDeepEqual(st.lse, before.lse);
      });
      it(`merge handles -inf on either side without NaN (${dtype})`, () => {
        const rd = { B: 1, T: 3, H: 1, D: 2 };
        const mk = (xs: number[]) => (dtype === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs));
        // Rows: (−inf, −inf), (−inf, finite), (finite, −inf).
        const st = { out: mk([0, 0, 0, 0, 0.5, -0.25]), lse: mk([-Infinity, -Infinity, 1.5]) };
        k.attnMerge(st, { out2: mk([0, 0, 2, 3, 0, 0]), lse2: mk([-Infinity, 0.25, -Infinity]) }, rd);
        assert.deepEqual(Array.from(st.out), [0, 0, 2, 3, 0.5, -0.25]);
        assert.deepEqual(Array.from(st.lse), [-Infinity, 0.25, 1.5]);
      });
      it(`merge of two finite parts matches the definition, also at |lse| ~ 1e4 (${dtype})`, () => {
        for (const base of [0, 1e4, -1e4]) {
          const l1 = base + 0.5;
          const l2 = base - 1.25;
          const mk = (xs: number[]) => (dtype === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs));
          const st = { out: mk([1, -2]), lse: mk([l1]) };
          k.attnMerge(st, { out2: mk([4, 8]), lse2: mk([l2]) }, { B: 1, T: 1, H: 1, D: 2 });
          // Weights computed around the shared base, where exp cannot overflow.
          const e1 = Math.exp(0.5), e2 = Math.exp(-1.25);
          const w1 = e1 / (e1 + e2), w2 = e2 / (e1 + e2);
          const lseTol = dtype === 'float64' ? 1e-15 : 1e-7;
          expectAllClose(st.lse, [base + Math.log(e1 + e2)], { rtol: lseTol, atol: 1e-12 }, `lse at ${base}`);
          expectAllClose(st.out, [w1 * 1 + w2 * 4, w1 * -2 + w2 * 8], tolFor(dtype), `out at ${base}`);
        }
      });
    }
    it('huge logits (|s| ~ 1e4) in blocks and merges: finite and equal to the reference', () => {
      const hc = standardCases()[0]!;
      const d = dims(hc, B, H, 2, 8);
      const inp = makeInputs('float64', hc, d, 11, 3000); // τ·q·k has std ≈ 3000, max ≈ 1e4
      const ref = refAttention(inp, d);
      const acc = emptyState('float64', B, hc.Tq, H, 8);
      for (const [j0, j1] of blocks(hc.Tk, 40)) {
        const part = emptyState('float64', B, hc.Tq, H, 8);
        const sub = { ...inp, k: sliceT(inp.k, B, hc.Tk, 16, j0, j1), v: sliceT(inp.v, B, hc.Tk, 16, j0, j1), kPos: hc.kPos.subarray(j0, j1) };
        k.attnForward(part, sub, { ...d, Tk: j1 - j0 });
        k.attnMerge(acc, { out2: part.out, lse2: part.lse }, { B, T: hc.Tq, H, D: 8 });
      }
      assert.ok(acc.out.every(Number.isFinite) && acc.lse.every(Number.isFinite), 'no overflow');
      assert.ok(Math.max(...acc.lse.map(Math.abs)) > 5e3, 'logits really are large');
      // s ~ 1e4 carries ~1e-12 absolute rounding, i.e. ~1e-12 relative in each probability.
      expectAllClose(acc.out, ref.out, { rtol: 1e-9, atol: 1e-9 }, 'out');
      expectAllClose(acc.lse, ref.lse, { rtol: 1e-12 }, 'lse');
      const f32 = { ...inp, q: Float32Array.from(inp.q), k: Float32Array.from(inp.k), v: Float32Array.from(inp.v) };
      const st32 = emptyState('float32', B, hc.Tq, H, 8);
      k.attnForward(st32, f32, d);
      assert.ok(st32.out.every(Number.isFinite) && st32.lse.every(Number.isFinite), 'no overflow in f32');
    });
  });
}
