/**
 * Sequential definitions of the collectives over all ranks' inputs at once, plus seeded inputs
 * whose float sums are exact (multiples of 1/4 with small magnitude), so "exact" really is exact.
 */
import type { CommBuf, ReduceOp } from '../../src/comm/types.js';

export type DTypeName = 'float32' | 'float64' | 'int32';
export const DTYPE_NAMES: readonly DTypeName[] = ['float32', 'float64', 'int32'];

export function alloc(dtype: DTypeName, n: number): CommBuf {
  return dtype === 'float32' ? new Float32Array(n) : dtype === 'float64' ? new Float64Array(n) : new Int32Array(n);
}

/** Deterministic input of rank `rank` for case `salt`. */
export function gen(dtype: DTypeName, n: number, rank: number, salt: number): CommBuf {
  const b = alloc(dtype, n);
  for (let i = 0; i < n; i++) {
    const v = (((rank + 1) * 31 + i * 17 + salt * 7) % 97) - 48;
    b[i] = dtype === 'int32' ? v * 1000003 : v / 4;
  }
  return b;
}

function reduce(chunks: readonly CommBuf[], op: ReduceOp, dtype: DTypeName): CommBuf {
  const n = chunks[0]!.length;
  const acc = alloc(dtype, n);
  for (let i = 0; i < n; i++) {
    acc[i] = chunks[0]![i]!;
    for (let k = 1; k < chunks.length; k++) acc[i] = op === 'max' ? Math.max(acc[i]!, chunks[k]![i]!) : acc[i]! + chunks[k]![i]!;
    if (op === 'avg') acc[i] = acc[i]! / chunks.length;
  }
  return acc;
}

export function refAllReduce(ins: readonly CommBuf[], op: ReduceOp, dtype: DTypeName): CommBuf[] {
  const r = reduce(ins, op, dtype);
  return ins.map(() => r);
}

export function refAllGather(ins: readonly CommBuf[], dtype: DTypeName): CommBuf[] {
  const n = ins[0]!.length;
  const out = alloc(dtype, n * ins.length);
  ins.forEach((x, k) => out.set(x, k * n));
  return ins.map(() => out);
}

export function refReduceScatter(ins: readonly CommBuf[], op: ReduceOp, dtype: DTypeName): CommBuf[] {
  const P = ins.length;
  const n = ins[0]!.length / P;
  return ins.map((_, r) => reduce(ins.map((x) => x.subarray(r * n, (r + 1) * n)), op, dtype));
}

export function refAllToAll(ins: readonly CommBuf[], dtype: DTypeName): CommBuf[] {
  const P = ins.length;
  const n = ins[0]!.length / P;
  return ins.map((_, r) => {
    const out = alloc(dtype, n * P);
    ins.forEach((x, k) => out.set(x.subarray(r * n, (r + 1) * n), k * n));
    return out;
  });
}

/** Compares exactly; returns a message naming the first differing element, or null. */
export function diff(what: string, got: ArrayLike<number>, want: ArrayLike<number>): string | null {
  if (got.length !== want.length) return `${what}: length ${got.length} != ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i]) && !(got[i] === want[i])) return `${what}: [${i}] = ${got[i]}, expected ${want[i]}`;
  }
  return null;
}
