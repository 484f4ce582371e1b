/** Shared fixtures of the attention kernel tests: dims, seeded inputs, slicing along T. */
import type { Kernels, AttnBlockDims, AttnMask } from '../../src/kernels/types.js';
import type { Buf, DType } from '../../src/tensor/dtype.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { randn } from '../helpers.js';

export type AttnKernels = Pick<Kernels, 'name' | 'attnForward' | 'attnBackward' | 'attnDelta' | 'attnMerge'>;

export interface AttnCase {
  name: string;
  Tq: number;
  Tk: number;
  qPos: Int32Array;
  kPos: Int32Array;
  mask: AttnMask;
}

/** Positions start, start+1, …, start+n−1. */
export function range(start: number, n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => start + i);
}

/** A seeded permutation of `p` (positions need not be sorted). */
export function shuffled(p: Int32Array, seed: number): Int32Array {
  const a = Int32Array.from(p);
  let x = seed >>> 0;
  for (let i = a.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Marks every `every`-th entry (from `from`) as padding (−1). */
export function padded(p: Int32Array, every: number, from = 0): Int32Array {
  const a = Int32Array.from(p);
  for (let i = from; i < a.length; i += every) a[i] = -1;
  return a;
}

/** Mask/position cases shared by the forward and backward tests. Tiles are 64 wide in the kernel. */
export function standardCases(): AttnCase[] {
  const self = (name: string, T: number, mask: AttnMask): AttnCase => ({ name, Tq: T, Tk: T, qPos: range(0, T), kPos: range(0, T), mask });
  return [
    self('causal self T=131', 131, { causal: true }),
    { name: 'non-causal Tq=70 Tk=90', Tq: 70, Tk: 90, qPos: range(0, 70), kPos: range(0, 90), mask: { causal: false } },
    self('causal window left=20 T=150', 150, { causal: true, windowLeft: 20 }),
    self('window left=5 right=3 T=100', 100, { causal: false, windowLeft: 5, windowRight: 3 }),
    { name: 'queries 40..55 vs keys 0..31', Tq: 16, Tk: 32, qPos: range(40, 16), kPos: range(0, 32), mask: { causal: true } },
    { name: 'queries 100..229 vs keys 0..199', Tq: 130, Tk: 200, qPos: range(100, 130), kPos: range(0, 200), mask: { causal: true } },
    { name: 'keys after queries (all masked)', Tq: 16, Tk: 32, qPos: range(0, 16), kPos: range(16, 32), mask: { causal: true } },
    { name: 'keys partly after queries', Tq: 70, Tk: 80, qPos: range(30, 70), kPos: range(60, 80), mask: { causal: true } },
    {
      name: 'padding in q and k',
      Tq: 80,
      Tk: 75,
      qPos: padded(range(0, 80), 7, 3),
      kPos: padded(range(0, 75), 5, 1),
      mask: { causal: true },
    },
    {
      name: 'shuffled positions, window',
      Tq: 90,
      Tk: 90,
      qPos: shuffled(range(0, 90), 1),
      kPos: shuffled(range(0, 90), 2),
      mask: { causal: true, windowLeft: 30 },
    },
  ];
}

export function dims(c: AttnCase, B: number, H: number, G: number, D: number): AttnBlockDims {
  return { B, Tq: c.Tq, Tk: c.Tk, H, G, D, scale: 1 / Math.sqrt(D), mask: c.mask };
}

export interface AttnInputs {
  q: Buf;
  k: Buf;
  v: Buf;
  qPos: Int32Array;
  kPos: Int32Array;
}

export function makeInputs(dtype: DType, c: AttnCase, d: AttnBlockDims, seed: number, qStd = 1): AttnInputs {
  return {
    q: randn(dtype, d.B * d.Tq * d.H * d.D, seed, qStd),
    k: randn(dtype, d.B * d.Tk * d.G * d.D, seed + 1),
    v: randn(dtype, d.B * d.Tk * d.G * d.D, seed + 2),
    qPos: c.qPos,
    kPos: c.kPos,
  };
}

/** A fresh running state: out = 0, lse = −inf. */
export function emptyState(dtype: DType, B: number, T: number, H: number, D: number): { out: Buf; lse: Buf } {
  const lse = allocBuf(dtype, B * T * H);
  lse.fill(-Infinity);
  return { out: allocBuf(dtype, B * T * H * D), lse };
}

/** Rows t0..t1 of x viewed as [B, T, row] (copied: the T slice is not contiguous for B > 1). */
export function sliceT(x: Buf, B: number, T: number, row: number, t0: number, t1: number): Buf {
  const n = t1 - t0;
  const y = x instanceof Float64Array ? new Float64Array(B * n * row) : new Float32Array(B * n * row);
  for (let b = 0; b < B; b++) y.set(x.subarray((b * T + t0) * row, (b * T + t1) * row), b * n * row);
  return y;
}

/** Writes y ([B, t1−t0, row]) into rows t0..t1 of x ([B, T, row]). */
export function putT(x: Buf, y: Buf, B: number, T: number, row: number, t0: number, t1: number): void {
  const n = t1 - t0;
  for (let b = 0; b < B; b++) x.set(y.subarray(b * n * row, (b + 1) * n * row), (b * T + t0) * row);
}

/** Splits 0..T into consecutive blocks of `size` (the last one shorter). */
export function blocks(T: number, size: number): [number, number][] {
  const r: [number, number][] = [];
  for (let t = 0; t < T; t += size) r.push([t, Math.min(T, t + size)]);
  return r;
}

export function tolFor(dtype: DType): { rtol: number; atol: number } {
  return dtype === 'float64' ? { rtol: 1e-12, atol: 1e-12 } : { rtol: 1e-5, atol: 1e-6 };
}

export function assertNoNaN(x: ArrayLike<number>, what: string): void {
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]!)) throw new Error(`${what}: NaN at #${i}`);
  }
}
