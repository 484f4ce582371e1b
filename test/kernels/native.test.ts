/**
 * Native backend, matmul and attention: every ISA path this CPU runs, against the naive float64
 * references (test/reference/) on odd sizes, all mask kinds, GQA, blocks at global offsets, fully
 * masked rows, accumulate semantics, SharedArrayBuffer views and 2 intra-op threads.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels } from '../../src/kernels/js/index.js';
import { refMatmul } from '../reference/dense.js';
import { refAttention, refAttentionBackward } from '../reference/attention.js';
import { blocks, dims, emptyState, makeInputs, sliceT, standardCases } from './attention-util.js';
import { close32, guardsIntact, isas, rand32, sharedView, skipReason, use } from './native-util.js';
import { nativeBulkAdd, nativeBulkCopy } from '../../src/kernels/native/index.js';

const MM_SIZES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [37, 53, 29],
  [65, 300, 70], // K crosses the 256-deep k block
  [150, 17, 200], // N crosses the 144-row A block; M not a multiple of the 16/32-wide tile
  // AVX-512 blocking (6 x 64 tile, 96-row A blocks, 512-deep k, 256-wide B block, 16 x 16
  // transposes): K crosses 512 with a tail of 19 (not a multiple of 16), M crosses 256 with a
  // 2-column tail, N = 200 leaves 8 rows (a 6-row tile and a 2-row one)
  [200, 531, 258],
  [520, 70, 130], // dW's k (= N) crosses 512; 130 columns: two full 64-wide panels and a tail
  [40, 100, 1400], // short k widens the B block (1280 columns at k = 100): M crosses it with a tail
  [300, 600, 70], // dW (packed column-major A, k in steps of 256): k = 300 has a tail of 44, n = 600 crosses the 512-wide B block
];

for (const isa of isas) {
  describe(`native matmul [${isa}]`, { skip: skipReason }, () => {
    for (const threads of [1, 2]) {
      for (const [N, K, M] of MM_SIZES) {
        it(`forward N=${N} K=${K} M=${M}, threads=${threads}, with and without bias`, () => {
          const k = use(isa, threads);
          const x = rand32(N * K, 1), w = rand32(M * K, 2), bias = rand32(M, 3);
          for (const b of [bias, null]) {
            const out = new Float32Array(N * M).fill(NaN); // forward overwrites
            k.matmulForward({ out }, { x, weight: w, bias: b }, { N, K, M });
            close32(out, refMatmul(x, w, b, N, K, M), 'out', [N, M]);
          }
        });
        it(`backward accumulates N=${N} K=${K} M=${M}, threads=${threads}`, () => {
          const k = use(isa, threads);
          const x = rand32(N * K, 4), w = rand32(M * K, 5), dOut = rand32(N * M, 6);
          const dx0 = rand32(N * K, 7), dw0 = rand32(M * K, 8), db0 = rand32(M, 9);
          const g = { dx: dx0.slice(), dWeight: dw0.slice(), dBias: db0.slice() };
          k.matmulBackward(g, { dOut, x, weight: w }, { N, K, M });
          // dx = dOut·W is refMatmul(dOut, Wᵀ); dW = dOutᵀ·x is refMatmul(dOutᵀ, xᵀ)
          const wT = new Float64Array(K * M), dOutT = new Float64Array(M * N), xT = new Float64Array(K * N);
          for (let m = 0; m < M; m++) for (let kk = 0; kk < K; kk++) wT[kk * M + m] = w[m * K + kk]!;
          for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) dOutT[m * N + n] = dOut[n * M + m]!;
          for (let n = 0; n < N; n++) for (let kk = 0; kk < K; kk++) xT[kk * N + n] = x[n * K + kk]!;
          const edx = new Float64Array(N * K), edw = new Float64Array(M * K), edb = new Float64Array(M);
          const pdx = refMatmul(dOut, wT, null, N, M, K), pdw = refMatmul(dOutT, xT, null, M, N, K);
          for (let i = 0; i < N * K; i++) edx[i] = dx0[i]! + pdx[i]!;
          for (let i = 0; i < M * K; i++) edw[i] = dw0[i]! + pdw[i]!;
          for (let m = 0; m < M; m++) {
            let s = db0[m]!;
            for (let n = 0; n < N; n++) s += dOut[n * M + m]!;
            edb[m] = s;
          }
          close32(g.dx, edx, 'dx', [N, K]);
          close32(g.dWeight, edw, 'dWeight', [M, K]);
          close32(g.dBias, edb, 'dBias');
          // any gradient may be omitted
          const only = { dWeight: dw0.slice() };
          k.matmulBackward(only, { dOut, x, weight: w }, { N, K, M });
          close32(only.dWeight, edw, 'dWeight alone', [M, K]);
        });
      }
    }
    it('works in place on SharedArrayBuffer subarrays with offsets, touching nothing else', () => {
      const k = use(isa);
      const N = 19, K = 23, M = 17;
      const x = sharedView(rand32(N * K, 11), 3), w = sharedView(rand32(M * K, 12), 1), out = sharedView(new Float32Array(N * M), 7);
      k.matmulForward({ out }, { x, weight: w }, { N, K, M });
      close32(out, refMatmul(x, w, null, N, K, M), 'out');
      assert.ok(guardsIntact(out, 7), 'out guard values');
    });
    it('rejects short buffers with a RangeError instead of writing past them', () => {
      const k = use(isa);
      assert.throws(() => k.matmulForward({ out: new Float32Array(3) }, { x: new Float32Array(6), weight: new Float32Array(6) }, { N: 2, K: 3, M: 2 }), RangeError);
    });
  });

  describe(`native attention forward [${isa}]`, { skip: skipReason }, () => {
    const H = 4, B = 2;
    standardCases().forEach((c, ci) => {
      [1, 2, H].forEach((G, gi) => {
        const D = [4, 16, 40, 72][(ci + gi) % 4]!; // below, at and off multiples of the vector width
        it(`${c.name}, G=${G}, D=${D}`, () => {
          const k = use(isa, (ci + gi) % 2 ? 2 : 1);
          const d = dims(c, B, H, G, D);
          const inp = makeInputs('float32', c, d, 100 + 7 * ci + gi);
          const st = emptyState('float32', B, c.Tq, H, D);
          k.attnForward(st, inp, d);
          const ref = refAttention(inp, d);
          close32(st.out, ref.out, 'out', [B, c.Tq, H, D]);
          close32(st.lse, ref.lse, 'lse', [B, c.Tq, H]);
          for (let r = 0; r < ref.lse.length; r++) {
            if (ref.lse[r] === -Infinity) {
              assert.equal(st.lse[r], -Infinity, `fully masked row ${r}: lse`);
              for (let e = 0; e < D; e++) assert.equal(st.out[r * D + e], 0, `fully masked row ${r}: out`);
            }
          }
        });
      });
    });
    it('larger tiles: T=300, D=64 and D=128, causal and not, 2 threads', () => {
      const k = use(isa, 2);
      for (const D of [64, 128]) {
        for (const causal of [false, true]) {
          const c = { name: 'big', Tq: 300, Tk: 300, qPos: Int32Array.from({ length: 300 }, (_, i) => i), kPos: Int32Array.from({ length: 300 }, (_, i) => i), mask: { causal } };
          const d = dims(c, 1, 2, 1, D);
          const inp = makeInputs('float32', c, d, 5);
          const st = emptyState('float32', 1, 300, 2, D);
          k.attnForward(st, inp, d);
          const ref = refAttention(inp, d);
          close32(st.out, ref.out, `out D=${D} causal=${causal}`);
          close32(st.lse, ref.lse, `lse D=${D} causal=${causal}`);
        }
      }
    });
    it('long key range (folded in ~512 KiB K/V passes): Tk=2600 D=64, causal with an offset and not, GQA, 2 threads', () => {
      const k = use(isa, 2);
      for (const causal of [false, true]) {
        const Tq = 37, Tk = 2600;
        const c = { name: 'long k', Tq, Tk, qPos: Int32Array.from({ length: Tq }, (_, i) => 1200 + 37 * i), kPos: Int32Array.from({ length: Tk }, (_, i) => i), mask: { causal } };
        const d = dims(c, 1, 4, 2, 64);
        const inp = makeInputs('float32', c, d, 61);
        const st = emptyState('float32', 1, Tq, 4, 64);
        k.attnForward(st, inp, d);
        const ref = refAttention(inp, d);
        close32(st.out, ref.out, `out causal=${causal}`, [1, Tq, 4, 64]);
        close32(st.lse, ref.lse, `lse causal=${causal}`, [1, Tq, 4]);
      }
    });
    it('score spread past 2^-126 (probabilities that flush to zero in the softmax exp), causal and not, with backward', () => {
      const k = use(isa);
      for (const causal of [false, true]) {
        const T = 70;
        const c = { name: 'spread', Tq: T, Tk: T, qPos: Int32Array.from({ length: T }, (_, i) => i), kPos: Int32Array.from({ length: T }, (_, i) => i), mask: { causal } };
        const d = dims(c, 1, 2, 1, 64);
        const inp = makeInputs('float32', c, d, 17);
        for (let e = 0; e < inp.q.length; e++) inp.q[e]! *= 60; // scores now span hundreds of log2 units per row
        // the case tests what it says: query 69 (head 0) sees scores more than 126 log2 units apart
        const sc = Array.from({ length: T }, (_, j) => {
          let x = 0;
          for (let e = 0; e < 64; e++) x += inp.q[(69 * 2) * 64 + e]! * inp.k[j * 64 + e]!;
          return x * d.scale * Math.LOG2E;
        });
        assert.ok(Math.max(...sc) - Math.min(...sc) > 126, `spread ${Math.max(...sc) - Math.min(...sc)}`);
        const st = emptyState('float32', 1, T, 2, 64);
        k.attnForward(st, inp, d);
        const ref = refAttention(inp, d);
        assert.ok(st.out.every(Number.isFinite) && st.lse.every(Number.isFinite), 'finite out and lse');
        close32(st.out, ref.out, `out causal=${causal}`, [1, T, 2, 64]);
        close32(st.lse, ref.lse, `lse causal=${causal}`, [1, T, 2]);
        const dOut = rand32(st.out.length, 23);
        const g = { dq: new Float32Array(inp.q.length), dk: new Float32Array(inp.k.length), dv: new Float32Array(inp.v.length) };
        const delta = new Float32Array(st.lse.length);
        k.attnDelta({ delta }, { dOut, out: st.out }, { B: 1, T, H: 2, D: 64 });
        k.attnBackward(g, { ...inp, dOut, out: st.out, lse: st.lse, delta }, d);
        const rg = refAttentionBackward({ ...inp, dOut }, d);
        close32(g.dv, rg.dv, `dv causal=${causal}`, undefined, 1e-5, 3e-5);
        assert.ok(g.dq.every(Number.isFinite) && g.dk.every(Number.isFinite), 'finite dq, dk');
      }
    });
    const blockCases = standardCases().filter((c) => /causal self|100\.\.229|window left=5|padding|shuffled/.test(c.name));
    for (const c of blockCases) {
      it(`${c.name}: keys folded in blocks at different global offsets`, () => {
        const k = use(isa);
        const d = dims(c, B, H, 2, 24);
        const inp = makeInputs('float32', c, d, 7);
        const ref = refAttention(inp, d);
        for (const size of [1, 7, 50, 70]) {
          const st = emptyState('float32', B, c.Tq, H, d.D);
          for (const [j0, j1] of blocks(c.Tk, size)) {
            const before = { out: st.out.slice(), lse: st.lse.slice() };
            const kb = sliceT(inp.k, B, c.Tk, d.G * d.D, j0, j1);
            const vb = sliceT(inp.v, B, c.Tk, d.G * d.D, j0, j1);
            const bd = { ...d, Tk: j1 - j0 };
            k.attnForward(st, { ...inp, k: kb, v: vb, kPos: c.kPos.subarray(j0, j1) }, bd);
            // rows with no allowed key in this block are left exactly unchanged
            const blockRef = refAttention({ ...inp, k: kb, v: vb, kPos: c.kPos.subarray(j0, j1) }, bd);
            for (let r = 0; r < blockRef.lse.length; r++) {
              if (blockRef.lse[r] !== -Infinity) continue;
              assert.equal(st.lse[r], before.lse[r], `untouched row ${r} lse (block ${j0}..${j1})`);
              for (let e = 0; e < d.D; e++) assert.equal(st.out[r * d.D + e], before.out[r * d.D + e]);
            }
          }
          close32(st.out, ref.out, `out (blocks of ${size})`, [B, c.Tq, H, d.D], 1e-5, 3e-5);
          close32(st.lse, ref.lse, `lse (blocks of ${size})`);
        }
      });
    }
    it('float64 arguments are delegated to the js backend', () => {
      const k = use(isa);
      const c = standardCases()[0]!;
      const d = dims(c, 1, 2, 1, 8);
      const inp = makeInputs('float64', c, d, 3);
      const a = emptyState('float64', 1, c.Tq, 2, 8), b = emptyState('float64', 1, c.Tq, 2, 8);
      k.attnForward(a, inp, d);
      jsKernels.attnForward(b, inp, d);
      assert.deepEqual(a.out, b.out);
    });
  });

  describe(`native attention backward [${isa}]`, { skip: skipReason }, () => {
    const H = 4, B = 2;
    standardCases().forEach((c, ci) => {
      [1, 2, H].forEach((G, gi) => {
        const D = [8, 20, 64][(ci + gi) % 3]!;
        it(`${c.name}, G=${G}, D=${D}: accumulates into dq, dk, dv`, () => {
          const k = use(isa, (ci + gi) % 2 ? 2 : 1);
          const d = dims(c, B, H, G, D);
          const inp = makeInputs('float32', c, d, 200 + 7 * ci + gi);
          const dOut = rand32(B * c.Tq * H * D, 300 + ci);
          const ref = refAttention(inp, d);
          const out = Float32Array.from(ref.out), lse = Float32Array.from(ref.lse);
          const delta = new Float32Array(B * c.Tq * H);
          k.attnDelta({ delta }, { dOut, out }, { B, T: c.Tq, H, D });
          const g0 = { dq: rand32(inp.q.length, 1), dk: rand32(inp.k.length, 2), dv: rand32(inp.v.length, 3) };
          const g = { dq: g0.dq.slice(), dk: g0.dk.slice(), dv: g0.dv.slice() };
          k.attnBackward(g, { ...inp, dOut, out, lse, delta }, d);
          const r = refAttentionBackward({ ...inp, dOut }, d);
          for (const name of ['dq', 'dk', 'dv'] as const) {
            const grad = new Float32Array(g[name].length);
            for (let e = 0; e < grad.length; e++) grad[e] = g[name][e]! - g0[name][e]!;
            // the accumulated gradient minus its start is the kernel's contribution
            close32(grad, r[name], name, undefined, 1e-4, 3e-5);
          }
        });
      });
    });
    it('long query range (visited in ~1 MiB Q/dO passes): Tq=2600 D=64, causal and not, GQA, 2 threads', () => {
      const k = use(isa, 2);
      for (const causal of [false, true]) {
        const Tq = 2600, Tk = 45;
        const c = { name: 'long q', Tq, Tk, qPos: Int32Array.from({ length: Tq }, (_, i) => i), kPos: Int32Array.from({ length: Tk }, (_, i) => 57 * i), mask: { causal } };
        const d = dims(c, 1, 4, 2, 64);
        const inp = makeInputs('float32', c, d, 71);
        const dOut = rand32(Tq * 4 * 64, 72);
        const ref = refAttention(inp, d);
        const out = Float32Array.from(ref.out), lse = Float32Array.from(ref.lse);
        const delta = new Float32Array(Tq * 4);
        k.attnDelta({ delta }, { dOut, out }, { B: 1, T: Tq, H: 4, D: 64 });
        const g = { dq: new Float32Array(inp.q.length), dk: new Float32Array(inp.k.length), dv: new Float32Array(inp.v.length) };
        k.attnBackward(g, { ...inp, dOut, out, lse, delta }, d);
        const r = refAttentionBackward({ ...inp, dOut }, d);
        for (const name of ['dq', 'dk', 'dv'] as const) close32(g[name], r[name], `${name} causal=${causal}`, undefined, 1e-4, 3e-5);
      }
    });
    it('key blocks at different global offsets sum to the whole backward', () => {
      const k = use(isa, 2);
      const c = standardCases().find((x) => /100\.\.229/.test(x.name))!;
      const d = dims(c, B, H, 2, 32);
      const inp = makeInputs('float32', c, d, 9);
      const dOut = rand32(B * c.Tq * H * 32, 10);
      const ref = refAttention(inp, d);
      const out = Float32Array.from(ref.out), lse = Float32Array.from(ref.lse);
      const delta = new Float32Array(B * c.Tq * H);
      k.attnDelta({ delta }, { dOut, out }, { B, T: c.Tq, H, D: 32 });
      const dq = new Float32Array(inp.q.length), dk = new Float32Array(inp.k.length), dv = new Float32Array(inp.v.length);
      for (const [j0, j1] of blocks(c.Tk, 70)) {
        const kb = sliceT(inp.k, B, c.Tk, d.G * d.D, j0, j1), vb = sliceT(inp.v, B, c.Tk, d.G * d.D, j0, j1);
        const g = { dq, dk: new Float32Array(kb.length), dv: new Float32Array(vb.length) };
        k.attnBackward(g, { ...inp, k: kb, v: vb, kPos: c.kPos.subarray(j0, j1), dOut, out, lse, delta }, { ...d, Tk: j1 - j0 });
        for (let b = 0; b < B; b++) {
          dk.set(g.dk.subarray(b * (j1 - j0) * d.G * d.D, (b + 1) * (j1 - j0) * d.G * d.D), (b * c.Tk + j0) * d.G * d.D);
          dv.set(g.dv.subarray(b * (j1 - j0) * d.G * d.D, (b + 1) * (j1 - j0) * d.G * d.D), (b * c.Tk + j0) * d.G * d.D);
        }
      }
      const r = refAttentionBackward({ ...inp, dOut }, d);
      close32(dq, r.dq, 'dq', undefined, 1e-4, 3e-5);
      close32(dk, r.dk, 'dk', undefined, 1e-4, 3e-5);
      close32(dv, r.dv, 'dv', undefined, 1e-4, 3e-5);
    });
  });

  describe(`native attention delta and merge [${isa}]`, { skip: skipReason }, () => {
    it('delta = rowsum(dOut * out); merge of two halves == whole, -inf safe', () => {
      const k = use(isa);
      const B = 2, H = 3, D = 37;
      const c = standardCases().find((x) => /padding/.test(x.name))!;
      const d = dims(c, B, H, 1, D);
      const inp = makeInputs('float32', c, d, 21);
      const whole = refAttention(inp, d);
      const half = Math.floor(c.Tk / 2);
      const part = (j0: number, j1: number) => {
        const st = emptyState('float32', B, c.Tq, H, D);
        k.attnForward(st, { ...inp, k: sliceT(inp.k, B, c.Tk, D, j0, j1), v: sliceT(inp.v, B, c.Tk, D, j0, j1), kPos: c.kPos.subarray(j0, j1) }, { ...d, Tk: j1 - j0 });
        return st;
      };
      const a = part(0, half), b = part(half, c.Tk);
      k.attnMerge({ out: a.out, lse: a.lse }, { out2: b.out, lse2: b.lse }, { B, T: c.Tq, H, D });
      close32(a.out, whole.out, 'merged out');
      close32(a.lse, whole.lse, 'merged lse');
      for (let i = 0; i < a.out.length; i++) assert.ok(!Number.isNaN(a.out[i]!), 'no NaN after merging empty rows');
      const dOut = rand32(a.out.length, 4), delta = new Float32Array(B * c.Tq * H);
      k.attnDelta({ delta }, { dOut, out: a.out }, { B, T: c.Tq, H, D });
      const e = new Float64Array(delta.length);
      for (let r = 0; r < e.length; r++) for (let j = 0; j < D; j++) e[r] += dOut[r * D + j]! * a.out[r * D + j]!;
      close32(delta, e, 'delta');
    });
  });
}

describe('native bulk add (the threads transport reductions)', { skip: skipReason }, () => {
  it('adds float32 and float64 elementwise, bitwise as the JavaScript loop, guards intact', () => {
    const add = nativeBulkAdd()!;
    const a = sharedView(rand32(1001, 5), 3), b = rand32(1001, 6);
    const want = Float32Array.from(a);
    for (let i = 0; i < want.length; i++) want[i] = want[i]! + b[i]!;
    add(a, b);
    assert.deepEqual(Array.from(a), Array.from(want));
    assert.ok(guardsIntact(a, 3), 'wrote outside dst');
    const x = Float64Array.from(rand32(77, 7), (v) => v / 3), y = Float64Array.from(rand32(77, 8), (v) => v / 7);
    const w = x.map((v, i) => v + y[i]!);
    add(x, y);
    assert.deepEqual(Array.from(x), Array.from(w));
  });
  it('rejects mixed element types, other types and different lengths', () => {
    const add = nativeBulkAdd()!;
    assert.throws(() => add(new Float32Array(4), new Float64Array(4)), /must both be Float32Array or both Float64Array/);
    assert.throws(() => add(new Int32Array(4) as unknown as Float32Array, new Int32Array(4) as unknown as Float32Array), /must both be Float32Array or both Float64Array/);
    assert.throws(() => add(new Float32Array(4), new Float32Array(3)), /dst has 16 bytes, src 12/);
  });
});

describe('native bulk copy (the threads transport memmove)', { skip: skipReason }, () => {
  it('copies between shared and ordinary views at offsets, bytes exact, guards intact', () => {
    const copy = nativeBulkCopy()!;
    const src = sharedView(rand32(1000, 3), 7);
    const dst = sharedView(new Float32Array(1000), 3);
    copy(dst, src);
    assert.deepEqual(Array.from(dst), Array.from(src));
    assert.ok(guardsIntact(dst, 3), 'wrote outside dst');
    const f64 = new Float64Array(500);
    copy(f64, src); // any element types of equal byte length
    assert.deepEqual(new Float32Array(f64.buffer), src);
  });
  it('rejects different byte lengths and non-typed-arrays', () => {
    const copy = nativeBulkCopy()!;
    assert.throws(() => copy(new Float32Array(4), new Float32Array(3)), /dst has 16 bytes, src 12/);
    assert.throws(() => copy(new Float32Array(4), {} as Float32Array), /typed arrays/);
  });
});
