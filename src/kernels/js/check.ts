/**
 * Argument checks shared by the js kernels. They run once per call (never in a hot loop) and turn
 * a wrong size into a clear error instead of a silent NaN from reading past the end of a buffer.
 */

/** Throws unless buf holds at least n elements. */
export function need(buf: ArrayLike<number>, n: number, what: string): void {
  if (buf.length < n) throw new RangeError(`${what}: buffer has ${buf.length} elements, needs ${n}`);
}

/** Throws unless v is a non-negative integer. */
export function dim(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${what} must be a non-negative integer, got ${v}`);
}
