/**
 * The copy and the add the threads transport uses for bulk data (staging, peer reads, the sums of
 * reduceScatter and allReduce). TypedArray.set and a JavaScript loop by default; a rank entry may
 * install faster ones (the native addon's memmove: V8 copies shared memory word by word; its add
 * loop: ~4x the JavaScript one on float32, bitwise the same sums). Module state is per worker
 * thread, so each rank installs its own.
 */
import type { CommBuf, ReduceOp } from '../types.js';
import { accumulate } from '../core.js';
import { copyRowsJs } from '../rows.js';

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

/**
 * For r < n: dst row (dRows ? dRows[r] : r) = (add: +=) src row (sRows ? sRows[r] : r), rows of
 * `row` elements (allToAllRows; rows.ts copyRowsJs is the reference).
 */
export type RowCopy = (dst: CommBuf, dRows: Int32Array | null, src: CommBuf, sRows: Int32Array | null, n: number, row: number, add: boolean) => void;
let rowImpl: RowCopy | null = null;

/** Installs (or with null removes) the row copy for this thread's ranks (the addon's copyRows). */
export function setRowCopy(fn: RowCopy | null): void {
  rowImpl = fn;
}

/** Below this many bytes in all the JavaScript row loop is as fast as a native call. */
const MIN_ROW_BYTES = 16 << 10;

/** The installed row copy for large float (or, copying, any) rows, else the JavaScript loop. */
export function bulkCopyRows(dst: CommBuf, dRows: Int32Array | null, src: CommBuf, sRows: Int32Array | null, n: number, row: number, add: boolean): void {
  const fast = rowImpl !== null && n * row * dst.BYTES_PER_ELEMENT >= MIN_ROW_BYTES && (!add || !(dst instanceof Int32Array));
  (fast ? rowImpl! : copyRowsJs)(dst, dRows, src, sRows, n, row, add);
}

export type BulkAdd = (dst: Float32Array | Float64Array, src: Float32Array | Float64Array) => void;
let addImpl: BulkAdd | null = null;

/** Installs (or with null removes) the bulk float add for this thread's ranks. */
export function setBulkAdd(fn: BulkAdd | null): void {
  addImpl = fn;
}

/** dst op= src (core's accumulate), through the installed add for large float sums. */
export function bulkAccumulate(dst: CommBuf, src: CommBuf, op: ReduceOp): void {
  if (addImpl !== null && op !== 'max' && dst.byteLength >= MIN_BYTES && (dst instanceof Float32Array || dst instanceof Float64Array) && src.constructor === dst.constructor) {
    addImpl(dst, src as Float32Array | Float64Array);
  } else {
    accumulate(dst, src, op);
  }
}

/**
 * One-copy reads of a peer's ordinary (non-shared) buffer by address (worker threads share the
 * address space): `addressOf` gives where a typed array's bytes start; `read` copies (or, add =
 * true, adds float32/float64) dst.byteLength bytes from an address, but only while the owner still
 * offers them, counting itself in ctl[readingIdx] meanwhile (native/addon.cc rawRead states the
 * protocol). Installed per thread by a rank entry, like the bulk copy; without it ordinary
 * buffers are staged into the sender's arena (two copies).
 */
export interface RawAccess {
  addressOf(ta: ArrayBufferView): number;
  read(dst: ArrayBufferView, addr: number, add: boolean, ctl: Int32Array, readingIdx: number, closedIdx: number, seq: number, abortIdx: number): boolean;
  /**
   * The same protocol for rows (allToAllRows): dst row (dRows ? dRows[r] : r) = (add: +=) the row
   * at addr + (sRows ? sRows[r] : r)·row elements, for r < n. Without it, row calls stage.
   */
  readRows?(dst: ArrayBufferView, dRows: Int32Array | null, addr: number, sRows: Int32Array | null, n: number, row: number, add: boolean, ctl: Int32Array, readingIdx: number, closedIdx: number, seq: number, abortIdx: number): boolean;
}
let raw: RawAccess | null = null;

/** Installs (or with null removes) raw peer reads for this thread's ranks. */
export function setRawAccess(r: RawAccess | null): void {
  raw = r;
}

/** The installed raw access (a reader needs it whatever the size), or null. */
export function rawAccess(): RawAccess | null {
  return raw;
}

/** The installed raw access when a buffer of `bytes` is worth reading by address (off-heap for sure), else null. */
export function rawAccessFor(bytes: number): RawAccess | null {
  return bytes >= MIN_BYTES ? raw : null;
}
