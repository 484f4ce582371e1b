/** Test harness for the sequence-parallel schemes: seeded global inputs and single-device references. */
import type { Buf, DType } from '../../src/tensor/dtype.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { randn } from '../helpers.js';
import type { SchemeName } from '../../src/parallel/types.js';

/** One scheme on P ranks (hybrid: with its ulysses size). */
export interface Run {
  scheme: SchemeName;
  P: number;
  ulysses?: number;
}

export const runLabel = (r: Run): string => `${r.scheme} P=${r.P}${r.ulysses !== undefined ? ` ulysses=${r.ulysses}` : ''}`;

/** What distributedAttention returns for a case, compared field by field with the reference. */
export const FIELDS = ['out', 'lse', 'dq', 'dk', 'dv'] as const;

export interface Case {
  B: number;
  S: number;
  H: number;
  G: number;
  D: number;
  causal: boolean;
  dtype: DType;
  /** Sliding window (AttnDims.window); absent: none. */
  window?: number;
}

export interface Inputs {
  q: Buf;
  k: Buf;
  v: Buf;
  dOut: Buf;
}

export function makeInputs(c: Case, seed = 1): Inputs {
  const { B, S, H, G, D, dtype } = c;
  return {
    q: randn(dtype, B * S * H * D, seed),
    k: randn(dtype, B * S * G * D, seed + 1),
    v: randn(dtype, B * S * G * D, seed + 2),
    dOut: randn(dtype, B * S * H * D, seed + 3),
  };
}

export interface Grads {
  out: Buf;
  lse: Buf;
  dq: Buf;
  dk: Buf;
  dv: Buf;
}

/** The kernel on the whole sequence, positions 0..S−1: the single-device reference. */
export function kernelReference(c: Case, x: Inputs): Grads {
  const { B, S, H, G, D, dtype } = c;
  const pos = Int32Array.from({ length: S }, (_, i) => i);
  const mask = c.window === undefined ? { causal: c.causal } : { causal: c.causal, windowLeft: c.window };
  const dims = { B, Tq: S, Tk: S, H, G, D, scale: 1 / Math.sqrt(D), mask };
  const out = allocBuf(dtype, B * S * H * D);
  const lse = allocBuf(dtype, B * S * H).fill(-Infinity);
  jsKernels.attnForward({ out, lse }, { q: x.q, k: x.k, v: x.v, qPos: pos, kPos: pos }, dims);
  const delta = allocBuf(dtype, B * S * H);
  jsKernels.attnDelta({ delta }, { dOut: x.dOut, out }, { B, T: S, H, D });
  const dq = allocBuf(dtype, x.q.length);
  const dk = allocBuf(dtype, x.k.length);
  const dv = allocBuf(dtype, x.v.length);
  jsKernels.attnBackward({ dq, dk, dv }, { dOut: x.dOut, q: x.q, k: x.k, v: x.v, out, lse, delta, qPos: pos, kPos: pos }, dims);
  return { out, lse, dq, dk, dv };
}

export function tolFor(dtype: DType): { rtol: number; atol: number } {
  return dtype === 'float64' ? { rtol: 1e-10, atol: 1e-12 } : { rtol: 1e-5, atol: 1e-6 };
}

export function caseName(c: Case, extra = ''): string {
  return `B=${c.B} S=${c.S} H=${c.H} G=${c.G} D=${c.D} ${c.causal ? 'causal' : 'full'}${c.window !== undefined ? ` window=${c.window}` : ''} ${c.dtype}${extra ? ' ' + extra : ''}`;
}
