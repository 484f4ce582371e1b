/**
 * Shared pieces of the kernel tests: the per-dtype forward tolerances of DESIGN §6 and a
 * finite-difference gradient check that also verifies backward ACCUMULATES (+=).
 */
import { dot, expectAllClose, finiteDiff, randn, toF32 } from '../helpers.js';
import type { Buf, DType } from '../../src/tensor/dtype.js';

export const DTYPES: readonly DType[] = ['float64', 'float32'];

/** Forward tolerance: float64 1e-12 (relative + absolute); float32 relative 1e-5. */
export function fwdTol(dtype: DType) {
  // float32: relative 1e-5, with a floor of 1e-6 of the largest magnitude for elements that
  // cancel to near zero (a float32 kernel rounds every operation, not just the stored result).
  return dtype === 'float64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-5, atol: 0, atolScale: 1e-6 };
}

/** Seeded normal inputs in dtype (float32 values are the float64 draws rounded). */
export function input(dtype: DType, n: number, seed: number, std = 1): Buf {
  const b = randn('float64', n, seed, std);
  return dtype === 'float64' ? b : toF32(b);
}

/**
 * Checks backward against central finite differences of L = Σ dOut · forward(inputs) in float64.
 * Every gradient buffer starts filled with random values g0; after one backward call grad − g0 must
 * equal the finite difference (rel 1e-6), which fails if backward overwrites instead of adding.
 *   inputs:   the differentiable float64 inputs, mutated in place by the finite differences;
 *   forward:  recomputes the output from the current inputs;
 *   backward: runs the kernel backward for the given dOut into the given gradients (same keys).
 */
export function checkGradients(
  what: string,
  inputs: Record<string, Float64Array>,
  forward: () => ArrayLike<number>,
  backward: (dOut: Float64Array, grads: Record<string, Float64Array>) => void,
  opts: { dOut?: Float64Array; seed?: number; rtol?: number; atol?: number } = {},
): void {
  const outLen = forward().length;
  const dOut = opts.dOut ?? (randn('float64', outLen, opts.seed ?? 12345) as Float64Array);
  const grads: Record<string, Float64Array> = {};
  const initial: Record<string, Float64Array> = {};
  let seed = 777;
  for (const [name, x] of Object.entries(inputs)) {
    initial[name] = randn('float64', x.length, seed++) as Float64Array;
    grads[name] = Float64Array.from(initial[name]!);
  }
  backward(dOut, grads);
  const loss = () => dot(forward(), dOut);
  for (const [name, x] of Object.entries(inputs)) {
    const fd = finiteDiff(loss, x);
    const added = grads[name]!.map((g, j) => g - initial[name]![j]!);
    expectAllClose(added, fd, { rtol: opts.rtol ?? 1e-6, atol: opts.atol ?? 1e-8 }, `${what}: d${name}`);
  }
}
