/**
 * The `overwrite` option of the input-gradient kernels (matmul dx, GELU, SwiGLU, RoPE backward):
 * dx is written, not accumulated, so whatever dx held before (NaN here) does not matter, and the
 * result equals accumulating into zeros exactly, and it matches an independent float64 reference:
 * the naive matmul and RoPE of test/reference, and central differences of the reference GELU and
 * SwiGLU. Every backend and ISA path; matmul shapes cross the AVX-512 tile, block and k-step
 * edges. dWeight and dBias keep accumulating.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels } from '../../src/kernels/js/index.js';
import type { Kernels } from '../../src/kernels/types.js';
import { refGelu, refMatmul, refRope, refSwiglu } from '../reference/dense.js';
import { close32, isas, rand32, skipReason, use } from './native-util.js';

/** a and b hold the same numbers (+0 and −0 count as equal), and none is NaN. */
function same(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    if (!(a[i] === b[i])) assert.fail(`${what}[${i}]: overwrite gave ${a[i]}, accumulating into zeros gave ${b[i]}`);
  }
}

/** d/dx_i Σ dOut·f(x) by central differences in float64 (f elementwise or row-local). */
function fdGrad(f: (x: Float64Array) => Float64Array, x: Float32Array, dOut: Float32Array): Float64Array {
  const xs = Float64Array.from(x), g = new Float64Array(x.length);
  const dot = (y: Float64Array) => y.reduce((a, v, i) => a + v * dOut[i]!, 0);
  for (let i = 0; i < x.length; i++) {
    const h = 1e-5 * Math.max(1, Math.abs(xs[i]!)), x0 = xs[i]!;
    xs[i] = x0 + h;
    const up = dot(f(xs));
    xs[i] = x0 - h;
    g[i] = (up - dot(f(xs))) / (2 * h);
    xs[i] = x0;
  }
  return g;
}

/** dx from `run` with overwrite into a NaN-filled buffer, and accumulating into a zeroed one. */
function both(n: number, run: (dx: Float32Array, overwrite: boolean) => void): [Float32Array, Float32Array] {
  const ov = new Float32Array(n).fill(NaN), acc = new Float32Array(n);
  run(ov, true);
  run(acc, false);
  return [ov, acc];
}

function suite(name: string, kernels: () => Kernels, skip: string | false): void {
  describe(`overwrite-mode input gradients [${name}]`, { skip }, () => {
    for (const [N, K, M] of [[7, 5, 3], [200, 531, 258], [40, 100, 1400], [13, 64, 64]] as const) {
      it(`matmul dx N=${N} K=${K} M=${M}; dWeight and dBias still accumulate`, () => {
        const k = kernels();
        const x = rand32(N * K, 1), w = rand32(M * K, 2), dOut = rand32(N * M, 3);
        const dW0 = rand32(M * K, 4), dB0 = rand32(M, 5);
        const grads: Record<string, { dWeight: Float32Array; dBias: Float32Array }> = {};
        const [ov, acc] = both(N * K, (dx, overwrite) => {
          const g = { dx, dWeight: dW0.slice(), dBias: dB0.slice() };
          k.matmulBackward(g, { dOut, x, weight: w }, { N, K, M, overwrite });
          grads[String(overwrite)] = g;
        });
        same(ov, acc, 'dx');
        // dx = dOut · W, i.e. refMatmul(dOut, Wᵀ)
        const wT = new Float64Array(K * M);
        for (let m = 0; m < M; m++) for (let kk = 0; kk < K; kk++) wT[kk * M + m] = w[m * K + kk]!;
        close32(ov, refMatmul(dOut, wT, null, N, M, K), 'dx vs naive float64', [N, K]);
        same(grads.true!.dWeight, grads.false!.dWeight, 'dWeight');
        same(grads.true!.dBias, grads.false!.dBias, 'dBias');
        assert.ok(grads.true!.dBias.some((v, i) => v !== dB0[i]), 'dBias accumulated');
      });
    }
    it('gelu backward, n = 1003', () => {
      const k = kernels();
      const n = 1003, x = rand32(n, 6, 3), dOut = rand32(n, 7);
      const [ov, acc] = both(n, (dx, overwrite) => k.geluBackward({ dx }, { dOut, x }, { n, overwrite }));
      same(ov, acc, 'dx');
      close32(ov, fdGrad((v) => refGelu(v), x, dOut), 'dx vs central differences', undefined, 1e-4, 1e-5);
    });
    it('swiglu backward, N=3, F=37', () => {
      const k = kernels();
      const N = 3, F = 37, x = rand32(N * 2 * F, 8, 2), dOut = rand32(N * F, 9);
      const [ov, acc] = both(N * 2 * F, (dx, overwrite) => k.swigluBackward({ dx }, { dOut, x }, { N, F, overwrite }));
      same(ov, acc, 'dx');
      close32(ov, fdGrad((v) => refSwiglu(v, N, F), x, dOut), 'dx vs central differences', undefined, 1e-4, 1e-5);
    });
    it('rope backward at global positions, D=10 and 64', () => {
      const k = kernels();
      for (const D of [10, 64]) {
        const B = 2, T = 5, H = 3, pos = Int32Array.from([0, 7, 3, 4096, 70000]);
        const dOut = rand32(B * T * H * D, 10 + D);
        const [ov, acc] = both(B * T * H * D, (dx, overwrite) => k.ropeBackward({ dx }, { dOut, pos }, { B, T, H, D, base: 10000, overwrite }));
        same(ov, acc, `dx D=${D}`);
        close32(ov, refRope(dOut, pos, B, T, H, D, 10000, -1), `dx D=${D} vs the float64 transpose`, [B, T, H, D], 1e-5, 2e-6);
      }
    });
  });
}

suite('js', () => jsKernels, false);
for (const isa of isas) suite(`native ${isa}`, () => use(isa), skipReason);
