/**
 * Shapes use the dimension letters of DESIGN.md §3: B batch, S global sequence, T local tokens,
 * H query heads, G kv heads, D head dim, C width, F ffn width, V vocab, L layers, P group size.
 * Tensors are contiguous row-major `{ data, shape }`.
 */
import type { Buf } from './dtype.js';

export type Shape = readonly number[];

export interface Tensor<B extends Buf = Buf> {
  data: B;
  shape: Shape;
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function strides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i]!;
  }
  return st;
}

/** Multi-index of flat offset `i` in `shape`, for error messages ("worst element at [0,3,1,7]"). */
export function unravel(i: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    const s = shape[d]!;
    idx[d] = i % s;
    i = Math.floor(i / s);
  }
  return idx;
}

export function tensor<B extends Buf>(data: B, shape: Shape): Tensor<B> {
  if (data.length !== numel(shape)) throw new Error(`tensor: data length ${data.length} != numel [${shape.join(',')}]`);
  return { data, shape };
}

export function assertDivides(what: string, n: number, by: number, byName: string): void {
  if (by <= 0 || n % by !== 0) throw new Error(`${what} not divisible by ${byName}`);
}
