/**
 * Fixtures of the native backend tests: the addon (or why it is missing, so the suite skips with a
 * reason), the ISA sweep, and float32 closeness scaled by the size of the expected values.
 */
import { loadNativeKernels, setNativeIsa, setNativeThreads, supportedIsas, type Isa } from '../../src/kernels/native/index.js';
import type { Kernels } from '../../src/kernels/types.js';
import { expectAllClose } from '../helpers.js';
import type { Shape } from '../../src/tensor/shape.js';

const loaded = loadNativeKernels();
/** The native kernels, or null (then `skipReason` says why). */
export const native: Kernels | null = 'kernels' in loaded ? loaded.kernels : null;
export const skipReason: string | false = 'error' in loaded ? loaded.error : false;
/** Every code path this CPU can run (AVX-512 only where the CPU has it). */
export const isas: Isa[] = native ? supportedIsas() : ['scalar'];

/** Selects the code path and intra-op thread count for the rest of the test body. */
export function use(isa: Isa, threads = 1): Kernels {
  setNativeIsa(isa);
  setNativeThreads(threads);
  return native!;
}

export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) if (Number.isFinite(x[i]!)) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

/**
 * float32 result vs a float64 reference: |a − e| ≤ rel·|e| + absRel·max|e|. The absolute part
 * covers sums of K terms of mixed sign, whose float32 rounding error is ~√K·2^-24 of the largest
 * terms rather than of the (possibly cancelled) result; a real bug gives O(1) errors.
 */
export function close32(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, shape?: Shape, rel = 1e-5, absRel = 1e-5): void {
  expectAllClose(actual, expected, { rtol: rel, atol: absRel * Math.max(maxAbs(expected), 1e-30) }, what, shape);
}

export function rand32(n: number, seed: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    // two xorshift draws -> approximately normal (sum of uniforms), cheap and seeded
    let s = 0;
    for (let j = 0; j < 4; j++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      s += (x >>> 0) / 4294967296;
    }
    a[i] = (s - 2) * std * 1.7320508;
  }
  return a;
}

/** A copy of x living at element `offset` of a SharedArrayBuffer (guard values around it). */
export function sharedView(x: Float32Array, offset: number, guard = 5): Float32Array {
  const sab = new SharedArrayBuffer((x.length + offset + guard) * 4);
  const all = new Float32Array(sab);
  all.fill(12345);
  const v = all.subarray(offset, offset + x.length);
  v.set(x);
  return v;
}
/** The guard values of sharedView are untouched. */
export function guardsIntact(v: Float32Array, offset: number): boolean {
  const all = new Float32Array(v.buffer as SharedArrayBuffer);
  for (let i = 0; i < offset; i++) if (all[i] !== 12345) return false;
  for (let i = offset + v.length; i < all.length; i++) if (all[i] !== 12345) return false;
  return true;
}
