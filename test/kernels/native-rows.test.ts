/**
 * Native backend, row-wise and elementwise kernels on every ISA path: norms, activations, RoPE,
 * embedding, cross-entropy, AdamW and the reductions, against the naive float64 references, with
 * odd sizes (vector tails) and accumulate semantics for every backward.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels } from '../../src/kernels/js/index.js';
import { refAdamw, refCrossEntropy, refEmbedding, refGelu, refLayerNorm, refRmsNorm, refRope, refSwiglu } from '../reference/dense.js';
import { close32, guardsIntact, isas, rand32, sharedView, skipReason, use } from './native-util.js';

/** js backend in float64 on float64 copies: the backward oracle (itself checked by finite differences). */
const f64 = (x: Float32Array) => Float64Array.from(x);
/** start + js float64 gradient contribution, for accumulate checks. */
function jsGrad(start: Float32Array, run: (g: Float64Array) => void): Float64Array {
  const g = f64(start);
  run(g);
  return g;
}

for (const isa of isas) {
  describe(`native row kernels [${isa}]`, { skip: skipReason }, () => {
    const N = 5;
    for (const C of [1, 7, 64, 99]) {
      it(`layerNorm forward/backward C=${C}`, () => {
        const k = use(isa);
        const x = rand32(N * C, 1, 2), w = rand32(C, 2), b = rand32(C, 3), dOut = rand32(N * C, 4);
        const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
        k.layerNormForward({ out, mean, rstd }, { x, weight: w, bias: b }, { N, C, eps: 1e-5 });
        const r = refLayerNorm(x, w, b, N, C, 1e-5);
        close32(out, r.out, 'out', [N, C], 1e-5, 1e-5);
        close32(mean, r.mean, 'mean', undefined, 1e-5, 1e-6);
        close32(rstd, r.rstd, 'rstd');
        const g0 = { dx: rand32(N * C, 5), dWeight: rand32(C, 6), dBias: rand32(C, 7) };
        const g = { dx: g0.dx.slice(), dWeight: g0.dWeight.slice(), dBias: g0.dBias.slice() };
        k.layerNormBackward(g, { dOut, x, weight: w, mean, rstd }, { N, C });
        const e = { dx: f64(g0.dx), dWeight: f64(g0.dWeight), dBias: f64(g0.dBias) };
        jsKernels.layerNormBackward(e, { dOut: f64(dOut), x: f64(x), weight: f64(w), mean: f64(mean), rstd: f64(rstd) }, { N, C });
        close32(g.dx, e.dx, 'dx', [N, C], 1e-4, 2e-5);
        close32(g.dWeight, e.dWeight, 'dWeight');
        close32(g.dBias, e.dBias, 'dBias');
      });
      it(`rmsNorm forward/backward C=${C}`, () => {
        const k = use(isa);
        const x = rand32(N * C, 11, 2), w = rand32(C, 12), dOut = rand32(N * C, 14);
        const out = new Float32Array(N * C), rstd = new Float32Array(N);
        k.rmsNormForward({ out, rstd }, { x, weight: w }, { N, C, eps: 1e-6 });
        const r = refRmsNorm(x, w, N, C, 1e-6);
        close32(out, r.out, 'out', [N, C]);
        close32(rstd, r.rstd, 'rstd');
        const g0 = { dx: rand32(N * C, 15), dWeight: rand32(C, 16) };
        const g = { dx: g0.dx.slice(), dWeight: g0.dWeight.slice() };
        k.rmsNormBackward(g, { dOut, x, weight: w, rstd }, { N, C });
        const e = { dx: f64(g0.dx), dWeight: f64(g0.dWeight) };
        jsKernels.rmsNormBackward(e, { dOut: f64(dOut), x: f64(x), weight: f64(w), rstd: f64(rstd) }, { N, C });
        close32(g.dx, e.dx, 'dx', [N, C], 1e-4, 2e-5);
        close32(g.dWeight, e.dWeight, 'dWeight');
      });
    }
    it('gelu forward/backward over n = 1003 values in [-12, 12]', () => {
      const k = use(isa);
      const n = 1003;
      const x = rand32(n, 21, 4), dOut = rand32(n, 22);
      x[0] = -12; x[1] = 12; x[2] = 0; x[3] = -5;
      const out = new Float32Array(n);
      k.geluForward({ out }, { x }, { n });
      close32(out, refGelu(x), 'out', undefined, 1e-5, 1e-6);
      const dx0 = rand32(n, 23), dx = dx0.slice();
      k.geluBackward({ dx }, { dOut, x }, { n });
      close32(dx, jsGrad(dx0, (g) => jsKernels.geluBackward({ dx: g }, { dOut: f64(dOut), x: f64(x) }, { n })), 'dx', undefined, 1e-5, 1e-6);
    });
    it('swiglu forward/backward N=3, F=37', () => {
      const k = use(isa);
      const Nr = 3, F = 37;
      const x = rand32(Nr * 2 * F, 31, 3), dOut = rand32(Nr * F, 32);
      const out = new Float32Array(Nr * F);
      k.swigluForward({ out }, { x }, { N: Nr, F });
      close32(out, refSwiglu(x, Nr, F), 'out', undefined, 1e-5, 1e-6);
      const dx0 = rand32(Nr * 2 * F, 33), dx = dx0.slice();
      k.swigluBackward({ dx }, { dOut, x }, { N: Nr, F });
      close32(dx, jsGrad(dx0, (g) => jsKernels.swigluBackward({ dx: g }, { dOut: f64(dOut), x: f64(x) }, { N: Nr, F })), 'dx', undefined, 1e-5, 1e-6);
    });
    for (const D of [2, 10, 64]) {
      it(`rope forward (in place too) and accumulating backward at global positions, D=${D}`, () => {
        const k = use(isa);
        const B = 2, T = 9, H = 3, base = 10000;
        const pos = Int32Array.from({ length: T }, (_, t) => [0, 1, 2, 500, 501, 70000, 3, 123456, 9][t]!);
        const x = rand32(B * T * H * D, 41), dOut = rand32(B * T * H * D, 42);
        const out = new Float32Array(x.length);
        k.ropeForward({ out }, { x, pos }, { B, T, H, D, base });
        const r = refRope(x, pos, B, T, H, D, base);
        close32(out, r, 'out', [B, T, H, D], 1e-5, 2e-6);
        const inPlace = x.slice();
        k.ropeForward({ out: inPlace }, { x: inPlace, pos }, { B, T, H, D, base });
        assert.deepEqual(inPlace, out, 'out may alias x');
        const dx0 = rand32(x.length, 43), dx = dx0.slice();
        k.ropeBackward({ dx }, { dOut, pos }, { B, T, H, D, base });
        const back = refRope(dOut, pos, B, T, H, D, base, -1);
        close32(dx, Float64Array.from(back, (v, i) => v + dx0[i]!), 'dx', [B, T, H, D], 1e-5, 2e-6);
      });
    }
    it('embedding forward/backward (repeated tokens accumulate); out-of-range token throws', () => {
      const k = use(isa);
      const V = 11, C = 13, Nt = 7;
      const tokens = Int32Array.from([3, 0, 10, 3, 5, 3, 9]);
      const w = rand32(V * C, 51), dOut = rand32(Nt * C, 52);
      const out = new Float32Array(Nt * C);
      k.embeddingForward({ out }, { tokens, weight: w }, { N: Nt, C });
      close32(out, refEmbedding(tokens, w, C), 'out', undefined, 0, 0);
      const dw0 = rand32(V * C, 53), dWeight = dw0.slice();
      k.embeddingBackward({ dWeight }, { dOut, tokens }, { N: Nt, C });
      const e = f64(dw0);
      for (let n = 0; n < Nt; n++) for (let c = 0; c < C; c++) e[tokens[n]! * C + c] += dOut[n * C + c]!;
      close32(dWeight, e, 'dWeight');
      assert.throws(() => k.embeddingForward({ out }, { tokens: Int32Array.from([0, 11, 0, 0, 0, 0, 0]), weight: w }, { N: Nt, C }), RangeError);
    });
    for (const V of [1, 50, 1000]) {
      it(`cross-entropy forward/backward V=${V} with ignored rows`, () => {
        const k = use(isa);
        const Nr = 6, ignoreIndex = -100;
        const logits = rand32(Nr * V, 61, 3);
        const targets = Int32Array.from({ length: Nr }, (_, n) => (n === 2 || n === 4 ? ignoreIndex : (n * 7919) % V));
        const losses = new Float32Array(Nr), lse = new Float32Array(Nr);
        const count = k.crossEntropyForward({ losses, lse }, { logits, targets }, { N: Nr, V, ignoreIndex });
        const r = refCrossEntropy(logits, targets, Nr, V, ignoreIndex);
        assert.equal(count, r.count);
        close32(lse, r.lse, 'lse');
        close32(losses, r.losses, 'losses', undefined, 1e-5, 1e-5);
        const d0 = rand32(Nr * V, 62), dLogits = d0.slice();
        k.crossEntropyBackward({ dLogits }, { logits, lse, targets }, { N: Nr, V, ignoreIndex, scale: 0.25 });
        const e = jsGrad(d0, (g) => jsKernels.crossEntropyBackward({ dLogits: g }, { logits: f64(logits), lse: f64(lse), targets }, { N: Nr, V, ignoreIndex, scale: 0.25 }));
        close32(dLogits, e, 'dLogits', [Nr, V], 1e-5, 1e-6);
      });
    }
    it('adamw: three steps on n = 37 values', () => {
      const k = use(isa);
      const n = 37, c = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      const p = rand32(n, 71), m = new Float32Array(n), v = new Float32Array(n);
      const rp = Array.from(p), rm = new Array<number>(n).fill(0), rv = new Array<number>(n).fill(0);
      for (let step = 1; step <= 3; step++) {
        const grad = rand32(n, 72 + step);
        k.adamwStep({ param: p, m, v }, { grad }, { n, ...c, step });
        refAdamw(rp, rm, rv, grad, c, step);
      }
      close32(p, rp, 'param', undefined, 1e-5, 1e-6);
      close32(m, rm, 'm');
      close32(v, rv, 'v');
    });
    it('sumSquares (float64 accumulation), scale, axpy on SharedArrayBuffer subarrays', () => {
      const k = use(isa);
      const n = 1001;
      const x = sharedView(rand32(n, 81), 3), y = sharedView(rand32(n, 82), 1);
      let e = 0;
      for (let i = 0; i < n; i++) e += x[i]! * x[i]!;
      assert.ok(Math.abs(k.sumSquares(x) - e) <= 1e-12 * e, 'sumSquares');
      const y0 = Float64Array.from(y);
      k.axpy(y, x, -0.5);
      close32(y, y0.map((v, i) => v - 0.5 * x[i]!), 'axpy');
      const x0 = Float64Array.from(x);
      k.scale(x, 3);
      close32(x, x0.map((v) => 3 * v), 'scale', undefined, 1e-7, 0);
      assert.ok(guardsIntact(x, 3) && guardsIntact(y, 1), 'guards');
    });
  });
}
