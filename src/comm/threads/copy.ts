/**
 * The copy the threads transport uses for bulk data (staging and peer reads). TypedArray.set by
 * default; a rank entry may install a faster one (the native addon's memmove: V8 copies shared
 * memory word by word). Module state is per worker thread, so each rank installs its own.
 */
import type { CommBuf } from '../types.js';

export type BulkCopy = (dst: ArrayBufferView, src: ArrayBufferView) => void;

/** Below this many bytes the call overhead outweighs a faster copy. */
const MIN_BYTES = 64 << 10;
let impl: BulkCopy | null = null;

/** Installs (or with null removes) the bulk copy for this thread's ranks. */
export function setBulkCopy(fn: BulkCopy | null): void {
  impl = fn;
}

/** dst = src; both have the same dtype and length. */
export function bulkCopy(dst: CommBuf, src: CommBuf): void {
  if (impl !== null && dst.byteLength >= MIN_BYTES) impl(dst, src);
  else dst.set(src);
}
