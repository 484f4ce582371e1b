/** Shared test helpers: closeness with a worst-element report, finite differences, seeded inputs. */
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor/rng.js';
import { unravel, type Shape } from '../src/tensor/shape.js';
import type { Buf, DType } from '../src/tensor/dtype.js';
import { allocBuf } from '../src/tensor/dtype.js';

export interface Tol {
  rtol?: number;
  atol?: number;
  /** Adds atolScale · max|expected| to atol: a floor for values that cancel to near zero in float32. */
  atolScale?: number;
}

/**
 * Asserts |a - e| <= atol + rtol·|e| elementwise (−inf == −inf counts as equal, NaN never does).
 * On failure names the worst element by multi-index when `shape` is given.
 */
export function expectAllClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol = {}, what = 'value', shape?: Shape): void {
  const rtol = tol.rtol ?? 0;
  let maxAbs = 0;
  if (tol.atolScale) for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]!) || 0);
  const atol = (tol.atol ?? 0) + (tol.atolScale ?? 0) * (Number.isFinite(maxAbs) ? maxAbs : 0);
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != expected ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  let bad = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (a === e) continue;
    const err = Math.abs(a - e);
    const lim = atol + rtol * Math.abs(e);
    if (!(err <= lim)) {
      bad++;
      const excess = Number.isFinite(err) ? err / (lim || Number.MIN_VALUE) : Infinity;
      if (worst < 0 || excess > worstExcess || Number.isNaN(a)) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (worst >= 0) {
    const at = shape ? `[${unravel(worst, shape).join(',')}]` : `#${worst}`;
    assert.fail(`${what}: ${bad} of ${actual.length} elements differ; worst at ${at}: got ${actual[worst]}, expected ${expected[worst]} (rtol ${rtol}, atol ${atol})`);
  }
}

/** Largest |a-e| / max(|e|, floor) — for reporting in assertion messages. */
export function maxRelErr(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-30): number {
  let m = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!) / Math.max(Math.abs(expected[i]!), floor);
    if (!(d <= m)) m = d;
  }
  return m;
}

/** Seeded normal buffer of n elements in dtype. */
export function randn(dtype: DType, n: number, seed: number, std = 1): Buf {
  const b = allocBuf(dtype, n);
  new Rng(seed).fillNormal(b, std);
  return b;
}

export function randInts(n: number, hi: number, seed: number): Int32Array {
  const r = new Rng(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = r.int(hi);
  return out;
}

export function toF32(b: ArrayLike<number>): Float32Array {
  return Float32Array.from(b as ArrayLike<number>);
}

export function toF64(b: ArrayLike<number>): Float64Array {
  return Float64Array.from(b as ArrayLike<number>);
}

/**
 * Central finite differences of a scalar function f with respect to every element of x (mutated
 * and restored in place). Returns df/dx, float64.
 */
export function finiteDiff(f: () => number, x: Float64Array, h = 1e-5, indices?: readonly number[]): Float64Array {
  const g = new Float64Array(x.length);
  const idx = indices ?? Array.from({ length: x.length }, (_, i) => i);
  for (const i of idx) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const fp = f();
    x[i] = x0 - h;
    const fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** Σ w·y: turns a vector output into a scalar loss with a seeded random cotangent w. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
