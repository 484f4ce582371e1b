/**
 * RoPE, fused cross-entropy and the optimizer kernels of every backend against naive float64
 * references and finite differences. RoPE runs on non-contiguous GLOBAL positions (zigzag-like).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availableBackends } from '../../src/kernels/index.js';
import type { Kernels } from '../../src/kernels/types.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { expectAllClose, randInts, randn } from '../helpers.js';
import { refAdamw, refCrossEntropy, refRope, type AdamConfig } from '../reference/dense.js';
import { checkGradients, DTYPES, fwdTol, input } from './gradcheck.js';

const f64 = (n: number, seed: number, std = 1) => randn('float64', n, seed, std) as Float64Array;

// Zigzag-like: this rank holds chunks 1 and 6 of a sequence of 8 chunks of 3, plus one far token.
const POS = Int32Array.of(3, 4, 5, 18, 19, 20, 4093);
const RD = { B: 2, T: POS.length, H: 3, D: 8, base: 10000 };
const RN = RD.B * RD.T * RD.H * RD.D;

// The whole suite runs once per available backend (native f32 is checked; f64 stays on js).
for (const k of availableBackends() as Kernels[]) {
  describe(`rope, cross-entropy and optimizer kernels [${k.name}]`, () => {
    it('rope forward matches the reference at non-contiguous global positions, also in place', () => {
      for (const dtype of DTYPES) {
        const x = input(dtype, RN, 30);
        const out = allocBuf(dtype, RN);
        k.ropeForward({ out }, { x, pos: POS }, RD);
        const ref = refRope(x, POS, RD.B, RD.T, RD.H, RD.D, RD.base);
        expectAllClose(out, ref, fwdTol(dtype), `rope ${dtype}`, [RD.B, RD.T, RD.H, RD.D]);
        k.ropeForward({ out: x }, { x, pos: POS }, RD); // out aliases x
        expectAllClose(x, out, { rtol: 0 }, `rope in place ${dtype}`);
      }
    });

    it('rope uses pos[t] per token, not the local index', () => {
      const x = f64(RN, 31);
      const [a, b] = [new Float64Array(RN), new Float64Array(RN)];
      k.ropeForward({ out: a }, { x, pos: POS }, RD);
      k.ropeForward({ out: b }, { x, pos: Int32Array.from(POS.keys()) }, RD);
      assert.ok(a.some((v, j) => Math.abs(v - b[j]!) > 1e-3), 'rope output ignores the global positions');
      // position 0 is the identity
      k.ropeForward({ out: a }, { x, pos: new Int32Array(RD.T) }, RD);
      expectAllClose(a, x, { rtol: 0, atol: 0 }, 'rope at position 0');
    });

    it('rope backward matches finite differences and accumulates', () => {
      const x = f64(RN, 32);
      checkGradients(
        'rope',
        { x },
        () => refRope(x, POS, RD.B, RD.T, RD.H, RD.D, RD.base),
        (dOut, g) => k.ropeBackward({ dx: g.x! }, { dOut, pos: POS }, RD),
      );
    });

    it('rope backward applied to the forward output recovers x (the inverse rotation)', () => {
      for (const dtype of DTYPES) {
        const x = input(dtype, RN, 33);
        const y = allocBuf(dtype, RN);
        k.ropeForward({ out: y }, { x, pos: POS }, RD);
        const back = allocBuf(dtype, RN);
        k.ropeBackward({ dx: back }, { dOut: y, pos: POS }, RD);
        const tol = dtype === 'float64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-5, atol: 1e-6 };
        expectAllClose(back, x, tol, `rope inverse ${dtype}`);
      }
    });

    it('rope rejects an odd head dim and dx aliasing dOut', () => {
      const b = new Float64Array(RN);
      assert.throws(() => k.ropeForward({ out: b }, { x: b, pos: POS }, { ...RD, D: 7 }), /even/);
      assert.throws(() => k.ropeBackward({ dx: b }, { dOut: b, pos: POS }, RD), /alias/);
    });

    const [N, V, IGNORE] = [7, 11, -100];
    const targets = randInts(N, V, 40);
    targets[2] = IGNORE;
    targets[5] = IGNORE;

    it('cross-entropy forward matches the reference and skips ignored rows', () => {
      for (const dtype of DTYPES) {
        const logits = input(dtype, N * V, 41, 3);
        const o = { losses: allocBuf(dtype, N).fill(9), lse: allocBuf(dtype, N) };
        const count = k.crossEntropyForward(o, { logits, targets }, { N, V, ignoreIndex: IGNORE });
        const ref = refCrossEntropy(logits, targets, N, V, IGNORE);
        assert.equal(count, 5);
        assert.equal(count, ref.count);
        expectAllClose(o.losses, ref.losses, fwdTol(dtype), `ce losses ${dtype}`);
        expectAllClose(o.lse, ref.lse, fwdTol(dtype), `ce lse ${dtype}`);
        assert.equal(o.losses[2], 0);
        assert.equal(o.losses[5], 0);
      }
    });

    it('cross-entropy is stable for large logits', () => {
      const logits = f64(N * V, 42, 3);
      const shifted = logits.map((z) => z + 1000);
      const [a, b] = [{ losses: new Float64Array(N), lse: new Float64Array(N) }, { losses: new Float64Array(N), lse: new Float64Array(N) }];
      k.crossEntropyForward(a, { logits, targets }, { N, V, ignoreIndex: IGNORE });
      k.crossEntropyForward(b, { logits: shifted, targets }, { N, V, ignoreIndex: IGNORE });
      expectAllClose(b.losses, a.losses, { rtol: 1e-10, atol: 1e-10 }, 'ce loss is shift invariant');
      expectAllClose(b.lse, a.lse.map((l) => l + 1000), { rtol: 1e-12 }, 'ce lse shifts');
    });

    it('cross-entropy backward matches finite differences of scale·Σ losses and accumulates', () => {
      const logits = f64(N * V, 43, 2);
      const scale = 1 / 5;
      checkGradients(
        'cross-entropy',
        { logits },
        () => refCrossEntropy(logits, targets, N, V, IGNORE).losses,
        (_dOut, g) => {
          const lse = new Float64Array(N);
          k.crossEntropyForward({ losses: new Float64Array(N), lse }, { logits, targets }, { N, V, ignoreIndex: IGNORE });
          k.crossEntropyBackward({ dLogits: g.logits! }, { logits, lse, targets }, { N, V, ignoreIndex: IGNORE, scale });
        },
        { dOut: new Float64Array(N).fill(scale) },
      );
    });

    it('cross-entropy with every row ignored: count 0, zero losses, no gradient, no NaN', () => {
      const all = new Int32Array(N).fill(IGNORE);
      const logits = f64(N * V, 44);
      const o = { losses: new Float64Array(N).fill(5), lse: new Float64Array(N) };
      assert.equal(k.crossEntropyForward(o, { logits, targets: all }, { N, V, ignoreIndex: IGNORE }), 0);
      assert.deepEqual(Array.from(o.losses), new Array(N).fill(0));
      assert.ok(o.lse.every(Number.isFinite));
      const dLogits = new Float64Array(N * V);
      k.crossEntropyBackward({ dLogits }, { logits, lse: o.lse, targets: all }, { N, V, ignoreIndex: IGNORE, scale: 1 });
      assert.ok(dLogits.every((v) => v === 0));
    });

    it('cross-entropy rejects a target outside the vocabulary', () => {
      const o = { losses: new Float64Array(1), lse: new Float64Array(1) };
      assert.throws(() => k.crossEntropyForward(o, { logits: new Float64Array(V), targets: Int32Array.of(V) }, { N: 1, V, ignoreIndex: IGNORE }), /targets/);
    });

    it('adamw matches a float64 reference over several steps', () => {
      const n = 13;
      for (const cfg of [
        { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 },
        { lr: 3e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0 },
      ] as AdamConfig[]) {
        for (const dtype of DTYPES) {
          const param = input(dtype, n, 50);
          const [m, v] = [allocBuf(dtype, n), allocBuf(dtype, n)];
          const ref = { p: Array.from(param), m: new Array<number>(n).fill(0), v: new Array<number>(n).fill(0) };
          for (let step = 1; step <= 5; step++) {
            const grad = input(dtype, n, 60 + step);
            k.adamwStep({ param, m, v }, { grad }, { n, ...cfg, step });
            refAdamw(ref.p, ref.m, ref.v, grad, cfg, step);
            const tol = dtype === 'float64' ? { rtol: 1e-12, atol: 1e-14 } : { rtol: 1e-5, atol: 1e-7 };
            expectAllClose(param, ref.p, tol, `adamw param ${dtype} step ${step}`);
            expectAllClose(m, ref.m, tol, `adamw m ${dtype} step ${step}`);
            expectAllClose(v, ref.v, tol, `adamw v ${dtype} step ${step}`);
          }
        }
      }
      const b = new Float64Array(1);
      assert.throws(() => k.adamwStep({ param: b, m: b, v: b }, { grad: b }, { n: 1, lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 0 }), /1-based/);
    });

    it('sumSquares accumulates in float64; scale and axpy', () => {
      for (const n of [0, 1, 7, 64]) {
        const x = input('float32', n, 70 + n);
        let want = 0;
        for (const v of x) want += v * v;
        expectAllClose([k.sumSquares(x)], [want], { rtol: 1e-13 }, `sumSquares n=${n}`);
      }
      // 1 + 2·2^-30 is not a float32 number, so a float32 accumulator would return 1
      const tiny = Float32Array.of(1, 2 ** -15, 2 ** -15);
      assert.equal(k.sumSquares(tiny), 1 + 2 ** -29);
      for (const dtype of DTYPES) {
        const y = input(dtype, 9, 80);
        const x = input(dtype, 9, 81);
        const want = Array.from(y, (v, j) => v - 0.5 * x[j]!);
        k.axpy(y, x, -0.5);
        expectAllClose(y, want, fwdTol(dtype), `axpy ${dtype}`);
        k.scale(y, 3);
        expectAllClose(y, want.map((v) => 3 * v), fwdTol(dtype), `scale ${dtype}`);
      }
    });
  });
}
