/** Float element types every kernel is generic over. The float64 js path is the oracle. */
export type DType = 'float32' | 'float64';
export type Buf = Float32Array | Float64Array;

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float64' ? 8 : 4;
}

export function allocBuf(dtype: DType, n: number): Buf {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

export function dtypeOf(b: Buf): DType {
  return b instanceof Float64Array ? 'float64' : 'float32';
}

/** Same dtype as `like`, n elements. */
export function allocLike(like: Buf, n: number = like.length): Buf {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

export function parseDType(s: string): DType {
  if (s === 'float32' || s === 'float64') return s;
  throw new Error(`dtype '${s}' is not one of float32|float64`);
}
