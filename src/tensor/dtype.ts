/** Float element types every kernel is generic over. The float64 js path is the oracle. */
export type DType = 'float32' | 'float64';
export type Buf = Float32Array | Float64Array;

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float64' ? 8 : 4;
}

/**
 * Allocator for buffers of at least LARGE_BUFFER_BYTES: the native backend installs one that maps
 * them 2 MiB-aligned on transparent huge pages (the kernels stream such buffers, and a GEMM's
 * operands then need one TLB entry per 2 MiB instead of per 4 KiB). It returns a zeroed
 * ArrayBuffer of exactly `bytes`, or null to fall back to a plain allocation. Null: plain.
 */
let largeAlloc: ((bytes: number) => ArrayBuffer | null) | null = null;
export const LARGE_BUFFER_BYTES = 4 << 20;

export function setLargeBufferAllocator(fn: ((bytes: number) => ArrayBuffer | null) | null): void {
  largeAlloc = fn;
}

function make(ctor: Float32ArrayConstructor | Float64ArrayConstructor, n: number): Buf {
  const bytes = n * ctor.BYTES_PER_ELEMENT;
  if (largeAlloc && bytes >= LARGE_BUFFER_BYTES) {
    const ab = largeAlloc(bytes);
    if (ab) return new ctor(ab);
  }
  return new ctor(n);
}

export function allocBuf(dtype: DType, n: number): Buf {
  return make(dtype === 'float64' ? Float64Array : Float32Array, n);
}

export function dtypeOf(b: Buf): DType {
  return b instanceof Float64Array ? 'float64' : 'float32';
}

/** Same dtype as `like`, n elements. */
export function allocLike(like: Buf, n: number = like.length): Buf {
  return make(like instanceof Float64Array ? Float64Array : Float32Array, n);
}

export function parseDType(s: string): DType {
  if (s === 'float32' || s === 'float64') return s;
  throw new Error(`dtype '${s}' is not one of float32|float64`);
}
