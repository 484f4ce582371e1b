/**
 * Dense kernels (matmul, LayerNorm, RMSNorm, GELU, SwiGLU, embedding) of every backend against the
 * naive float64 references (forward, float64 and float32) and central finite differences (backward).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availableBackends } from '../../src/kernels/index.js';
import type { Kernels } from '../../src/kernels/types.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { expectAllClose, randInts, randn } from '../helpers.js';
import { refEmbedding, refGelu, refLayerNorm, refMatmul, refRmsNorm, refSwiglu } from '../reference/dense.js';
import { checkGradients, DTYPES, fwdTol, input } from './gradcheck.js';

const f64 = (n: number, seed: number, std = 1) => randn('float64', n, seed, std) as Float64Array;

// sizes that are not multiples of the 2×4 register blocks, plus exact multiples and degenerate ones
const MATMUL_SIZES = [
  { N: 5, K: 7, M: 6 },
  { N: 8, K: 8, M: 8 },
  { N: 3, K: 1, M: 3 },
  { N: 1, K: 9, M: 11 },
];

// The whole suite runs once per available backend (native f32 is checked; f64 stays on js).
for (const k of availableBackends() as Kernels[]) {
  describe(`dense kernels [${k.name}]`, () => {
    it('matmul forward matches the reference, with and without bias', () => {
      for (const dtype of DTYPES) {
        for (const d of MATMUL_SIZES) {
          for (const withBias of [false, true]) {
            const x = input(dtype, d.N * d.K, 1);
            const w = input(dtype, d.M * d.K, 2);
            const bias = withBias ? input(dtype, d.M, 3) : null;
            const out = allocBuf(dtype, d.N * d.M).fill(123); // forward must overwrite
            k.matmulForward({ out }, { x, weight: w, bias }, d);
            const what = `matmul ${dtype} ${JSON.stringify(d)} bias=${withBias}`;
            expectAllClose(out, refMatmul(x, w, bias, d.N, d.K, d.M), fwdTol(dtype), what, [d.N, d.M]);
          }
        }
      }
    });

    it('matmul backward: dx, dWeight, dBias match finite differences and accumulate', () => {
      for (const d of MATMUL_SIZES) {
        const x = f64(d.N * d.K, 4);
        const weight = f64(d.M * d.K, 5);
        const bias = f64(d.M, 6);
        checkGradients(
          `matmul ${JSON.stringify(d)}`,
          { x, weight, bias },
          () => refMatmul(x, weight, bias, d.N, d.K, d.M),
          (dOut, g) => k.matmulBackward({ dx: g.x, dWeight: g.weight, dBias: g.bias }, { dOut, x, weight }, d),
        );
      }
    });

    it('matmul backward leaves omitted gradients alone and computes each one independently', () => {
      const d = { N: 5, K: 6, M: 7 };
      const [x, weight, dOut] = [f64(d.N * d.K, 7), f64(d.M * d.K, 8), f64(d.N * d.M, 9)];
      const all = { dx: new Float64Array(d.N * d.K), dWeight: new Float64Array(d.M * d.K), dBias: new Float64Array(d.M) };
      k.matmulBackward(all, { dOut, x, weight }, d);
      const onlyDx = new Float64Array(d.N * d.K);
      k.matmulBackward({ dx: onlyDx, dWeight: null }, { dOut, x, weight }, d);
      expectAllClose(onlyDx, all.dx, { rtol: 0 }, 'dx alone');
      const onlyDw = new Float64Array(d.M * d.K);
      k.matmulBackward({ dWeight: onlyDw }, { dOut, x, weight }, d);
      expectAllClose(onlyDw, all.dWeight, { rtol: 0 }, 'dWeight alone');
      const onlyDb = new Float64Array(d.M);
      k.matmulBackward({ dBias: onlyDb }, { dOut, x, weight }, d);
      expectAllClose(onlyDb, all.dBias, { rtol: 0 }, 'dBias alone');
    });

    it('matmul rejects buffers smaller than the dims', () => {
      const d = { N: 4, K: 3, M: 2 };
      assert.throws(() => k.matmulForward({ out: new Float64Array(8) }, { x: new Float64Array(11), weight: new Float64Array(6) }, d), /x/);
    });

    it('layerNorm forward matches the reference (out, mean, rstd)', () => {
      const N = 5;
      const C = 7;
      for (const dtype of DTYPES) {
        const x = input(dtype, N * C, 10, 3);
        for (let j = 0; j < N * C; j++) x[j] += 4; // a non-zero mean
        const [w, b] = [input(dtype, C, 11), input(dtype, C, 12)];
        const o = { out: allocBuf(dtype, N * C), mean: allocBuf(dtype, N), rstd: allocBuf(dtype, N) };
        k.layerNormForward(o, { x, weight: w, bias: b }, { N, C, eps: 1e-5 });
        const ref = refLayerNorm(x, w, b, N, C, 1e-5);
        expectAllClose(o.out, ref.out, fwdTol(dtype), `layerNorm out ${dtype}`, [N, C]);
        expectAllClose(o.mean, ref.mean, fwdTol(dtype), `layerNorm mean ${dtype}`);
        expectAllClose(o.rstd, ref.rstd, fwdTol(dtype), `layerNorm rstd ${dtype}`);
      }
    });

    it('layerNorm backward: dx, dWeight, dBias match finite differences and accumulate', () => {
      const [N, C, eps] = [4, 6, 1e-5];
      const [x, weight, bias] = [f64(N * C, 13), f64(C, 14), f64(C, 15)];
      checkGradients(
        'layerNorm',
        { x, weight, bias },
        () => refLayerNorm(x, weight, bias, N, C, eps).out,
        (dOut, g) => {
          const s = { out: new Float64Array(N * C), mean: new Float64Array(N), rstd: new Float64Array(N) };
          k.layerNormForward(s, { x, weight, bias }, { N, C, eps });
          k.layerNormBackward({ dx: g.x!, dWeight: g.weight!, dBias: g.bias! }, { dOut, x, weight, mean: s.mean, rstd: s.rstd }, { N, C });
        },
      );
    });

    it('rmsNorm forward matches the reference (out, rstd)', () => {
      const [N, C] = [5, 9];
      for (const dtype of DTYPES) {
        const [x, w] = [input(dtype, N * C, 16, 2), input(dtype, C, 17)];
        const o = { out: allocBuf(dtype, N * C), rstd: allocBuf(dtype, N) };
        k.rmsNormForward(o, { x, weight: w }, { N, C, eps: 1e-6 });
        const ref = refRmsNorm(x, w, N, C, 1e-6);
        expectAllClose(o.out, ref.out, fwdTol(dtype), `rmsNorm out ${dtype}`, [N, C]);
        expectAllClose(o.rstd, ref.rstd, fwdTol(dtype), `rmsNorm rstd ${dtype}`);
      }
    });

    it('rmsNorm backward: dx, dWeight match finite differences and accumulate', () => {
      const [N, C, eps] = [4, 7, 1e-6];
      const [x, weight] = [f64(N * C, 18), f64(C, 19)];
      checkGradients(
        'rmsNorm',
        { x, weight },
        () => refRmsNorm(x, weight, N, C, eps).out,
        (dOut, g) => {
          const s = { out: new Float64Array(N * C), rstd: new Float64Array(N) };
          k.rmsNormForward(s, { x, weight }, { N, C, eps });
          k.rmsNormBackward({ dx: g.x!, dWeight: g.weight! }, { dOut, x, weight, rstd: s.rstd }, { N, C });
        },
      );
    });

    it('gelu forward matches the reference and may run in place', () => {
      const n = 37;
      for (const dtype of DTYPES) {
        const x = input(dtype, n, 20, 3);
        const out = allocBuf(dtype, n);
        k.geluForward({ out }, { x }, { n });
        expectAllClose(out, refGelu(x), fwdTol(dtype), `gelu ${dtype}`);
        k.geluForward({ out: x }, { x }, { n });
        expectAllClose(x, out, { rtol: 0 }, `gelu in place ${dtype}`);
      }
    });

    it('gelu backward matches finite differences and accumulates', () => {
      const n = 29;
      const x = f64(n, 21, 3);
      checkGradients('gelu', { x }, () => refGelu(x), (dOut, g) => k.geluBackward({ dx: g.x! }, { dOut, x }, { n }));
    });

    it('swiglu forward matches the reference, large |gate| included', () => {
      const [N, F] = [3, 5];
      for (const dtype of DTYPES) {
        const x = input(dtype, 2 * N * F, 22, 2);
        x[0] = 80; // σ saturates without overflow either way
        x[1] = -80;
        const out = allocBuf(dtype, N * F);
        k.swigluForward({ out }, { x }, { N, F });
        expectAllClose(out, refSwiglu(x, N, F), fwdTol(dtype), `swiglu ${dtype}`, [N, F]);
      }
    });

    it('swiglu backward matches finite differences and accumulates', () => {
      const [N, F] = [3, 4];
      const x = f64(2 * N * F, 23, 2);
      checkGradients('swiglu', { x }, () => refSwiglu(x, N, F), (dOut, g) => k.swigluBackward({ dx: g.x! }, { dOut, x }, { N, F }));
    });

    it('embedding forward matches the reference; backward sums repeated tokens', () => {
      const [V, C, N] = [7, 5, 9];
      const tokens = randInts(N, V, 24);
      tokens[3] = tokens[0]!; // a repeat is guaranteed
      for (const dtype of DTYPES) {
        const w = input(dtype, V * C, 25);
        const out = allocBuf(dtype, N * C);
        k.embeddingForward({ out }, { tokens, weight: w }, { N, C });
        expectAllClose(out, refEmbedding(tokens, w, C), fwdTol(dtype), `embedding ${dtype}`, [N, C]);
      }
      const weight = f64(V * C, 26);
      checkGradients(
        'embedding',
        { weight },
        () => refEmbedding(tokens, weight, C),
        (dOut, g) => k.embeddingBackward({ dWeight: g.weight! }, { dOut, tokens }, { N, C }),
      );
    });

    it('embedding rejects tokens outside the vocabulary', () => {
      const w = new Float64Array(4 * 2);
      assert.throws(() => k.embeddingForward({ out: new Float64Array(2) }, { tokens: Int32Array.of(4), weight: w }, { N: 1, C: 2 }), /vocabulary/);
      assert.throws(() => k.embeddingBackward({ dWeight: w }, { dOut: new Float64Array(2), tokens: Int32Array.of(-1) }, { N: 1, C: 2 }), /vocabulary/);
    });
  });
}
