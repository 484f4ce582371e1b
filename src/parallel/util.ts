/**
 * Small pieces shared by the schemes: chunk split/join along the token dim, the scratch pool, and
 * the head splits Ulysses uses (including GQA key/value head replication).
 */
import type { Buf } from '../tensor/dtype.js';
import { allocLike } from '../tensor/dtype.js';
import type { ProcessGroup, RowMap } from '../comm/types.js';

/** Where a scratch pool gets memory: a group's zero-copy buffers (so its sends skip staging). */
export type ScratchMemory = Pick<ProcessGroup, 'allocBuffer' | 'releaseBuffer'>;

/**
 * A scheme's scratch pool. Every forward/backward call starts with `begin()` and then asks for
 * buffers in a fixed order; the i-th request of a call gets slot i, which persists across calls and
 * grows to the largest size any call asked of it (forward and backward share slots). Allocating
 * MB-sized zero-filled arrays per call cost page faults, zeroing and GC on every layer, so buffers
 * come back with whatever the previous call left in them: a caller that accumulates must
 * `fill(0)` first. `peakBytes` is what the pool holds (all of it persists between calls). An op
 * must not run two calls at once (the model awaits each), or they would share slots.
 * Given a group (`mem`), slots come from its allocBuffer, so collectives sending from scratch
 * move each byte once (threads transport: peers read the rank's shared arena directly).
 */
export class Scratch {
  peakBytes = 0;
  private cur = 0;
  private readonly slots: Buf[] = [];

  constructor(private readonly mem?: ScratchMemory) {}

  begin(): void {
    this.cur = 0;
  }

  /** n elements of the dtype of `like`, NOT zeroed (contents left by an earlier call). */
  alloc(like: Buf, n: number): Buf {
    const i = this.cur++;
    let b = this.slots[i];
    const same = b !== undefined && (b instanceof Float64Array) === (like instanceof Float64Array);
    if (!b || !same || b.length < n) {
      const size = Math.max(n, same ? b!.length : 0);
      const grown = this.mem ? this.mem.allocBuffer(like instanceof Float64Array ? 'float64' : 'float32', size) : allocLike(like, size);
      this.peakBytes += grown.byteLength - (b?.byteLength ?? 0);
      if (b && this.mem) this.mem.releaseBuffer(b);
      this.slots[i] = b = grown;
    }
    return b.length === n ? b : b.subarray(0, n);
  }

  /** A copy of x in scratch. */
  copy(x: Buf): Buf {
    const b = this.alloc(x, x.length);
    b.set(x);
    return b;
  }

  /** Fills every held buffer with v (tests: NaN catches a caller that relies on zeroed scratch). */
  poison(v = NaN): void {
    for (const b of this.slots) b.fill(v);
  }
}

/**
 * Views of the c chunks of [B, T, row] along T when each is contiguous (c = 1, or B = 1): chunk i
 * holds local tokens [i·T/c, (i+1)·T/c). Null when B > 1 and c > 1 (chunks are strided).
 */
export function chunkViews(x: Buf, B: number, T: number, row: number, c: number): Buf[] | null {
  if (c === 1) return [x];
  if (B !== 1) return null;
  const m = (T / c) * row;
  return Array.from({ length: c }, (_, i) => x.subarray(i * m, (i + 1) * m));
}

/**
 * [B, T, row] -split-> c × [B, T/c, row]. Views (no copy) when the chunks are contiguous (c = 1 or
 * B = 1), so callers can read, and accumulate into, them directly; copies in scratch otherwise.
 */
export function splitChunks(x: Buf, B: number, T: number, row: number, c: number, scratch: Scratch): Buf[] {
  const views = chunkViews(x, B, T, row, c);
  if (views) return views;
  const Tc = T / c;
  const parts: Buf[] = [];
  for (let i = 0; i < c; i++) {
    const p = scratch.alloc(x, B * Tc * row);
    for (let b = 0; b < B; b++) p.set(x.subarray((b * T + i * Tc) * row, (b * T + (i + 1) * Tc) * row), b * Tc * row);
    parts.push(p);
  }
  return parts;
}

/**
 * [B, T, row] -pack-> c × [B, T/c, row] written one after the other into dst from `off`: one copy
 * when the chunks are contiguous (B = 1 or c = 1).
 */
export function packChunks(dst: Buf, off: number, x: Buf, B: number, T: number, row: number, c: number): void {
  if (B === 1 || c === 1) {
    dst.set(x, off);
    return;
  }
  const Tc = T / c;
  const n = Tc * row;
  for (let i = 0; i < c; i++) {
    for (let b = 0; b < B; b++) dst.set(x.subarray((b * T + i * Tc) * row, (b * T + i * Tc) * row + n), off + (i * B + b) * n);
  }
}

/** Do two views share any bytes? (Scratch buffers share one arena, so same `buffer` is not enough.) */
function overlaps(x: Buf, y: Buf): boolean {
  return x.buffer === y.buffer && x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

/** True when part i of c is the view of x's chunk i (as `chunkViews` returns it). */
function isChunkView(p: Buf, x: Buf, i: number, c: number): boolean {
  return p.buffer === x.buffer && p.byteOffset === x.byteOffset + i * p.byteLength && p.length * c === x.length;
}

/**
 * c × [B, T/c, row] -join-> [B, T, row], overwriting (`add` = false) or accumulating into out.
 * Parts that are views of out's own chunks (from `chunkViews`) are already in place when
 * overwriting; adding such a part into itself is an error.
 */
export function joinChunks(out: Buf, parts: readonly Buf[], B: number, T: number, row: number, add: boolean): void {
  const c = parts.length;
  const Tc = T / c;
  for (let i = 0; i < c; i++) {
    const p = parts[i]!;
    if (overlaps(p, out)) {
      if (!add && (c === 1 || B === 1) && isChunkView(p, out, i, c)) continue;
      throw new Error('joinChunks: a part aliases the output');
    }
    for (let b = 0; b < B; b++) {
      const src = b * Tc * row;
      const dst = (b * T + i * Tc) * row;
      const n = Tc * row;
      if (add) addInto(out.subarray(dst, dst + n), p.subarray(src, src + n));
      else out.set(p.subarray(src, src + n), dst);
    }
  }
}

/** Splits a rank's positions [T] into c equal runs (views). */
export function chunkPositions(pos: Int32Array, c: number): Int32Array[] {
  const Tc = pos.length / c;
  return Array.from({ length: c }, (_, i) => pos.subarray(i * Tc, (i + 1) * Tc));
}

/** y += x elementwise. */
export function addInto(y: Buf, x: Buf): void {
  for (let i = 0; i < y.length; i++) y[i] = y[i]! + x[i]!;
}

/** Which source heads go to destination rank p: heads [first(p), first(p) + perRank). */
export interface HeadSplit {
  readonly heads: number;
  readonly perRank: number;
  first(p: number): number;
  /** True when several ranks receive the same head (GQA replication): their gradients are summed. */
  readonly replicated: boolean;
}

/** Query heads split evenly over P ranks. */
export function queryHeadSplit(what: string, H: number, P: number, axis = 'sp'): HeadSplit {
  if (H % P !== 0) throw new Error(`${what}: heads H=${H} not divisible by ${axis}=${P}`);
  const per = H / P;
  return { heads: H, perRank: per, first: (p) => p * per, replicated: false };
}

/**
 * Key/value heads over P ranks (algorithms.md §3.5): split like queries when G % P == 0; when
 * P % G == 0 every rank gets the one kv head its query heads use (head ⌊p·G/P⌋, replicated P/G
 * times); otherwise no exact split exists.
 */
export function kvHeadSplit(what: string, H: number, G: number, P: number, axis = 'sp'): HeadSplit {
  if (G < 1 || H % G !== 0) throw new Error(`${what}: heads H=${H} not divisible by kv heads G=${G}`);
  if (G % P === 0) {
    const per = G / P;
    return { heads: G, perRank: per, first: (p) => p * per, replicated: false };
  }
  if (P % G === 0) return { heads: G, perRank: 1, first: (p) => Math.floor((p * G) / P), replicated: true };
  throw new Error(`${what}: kv heads G=${G} and ${axis}=${P}: need G % ${axis} == 0 or ${axis} % G == 0`);
}

/** One tensor taking part in a head/sequence all-to-all: [B, T, heads, row] on the sequence side. */
export interface A2APart {
  split: HeadSplit;
  /** Elements per (token, head): D for q/k/v/out, 1 for lse. */
  row: number;
}

/** Elements one rank sends to each destination for this part (T tokens per rank): [B, T, perRank, row]. */
export function a2aChunk(part: A2APart, B: number, T: number): number {
  return B * T * part.split.perRank * part.row;
}

/**
 * Row maps of one head↔sequence exchange (comm's allToAllRows). The sequence side [B, T, heads,
 * row] is seen as rows of perRank·row elements (R = heads/perRank rows per token) and the head
 * side [B, P·T, perRank, row] as rows of the same size:
 * - to heads: chunk p gathers sequence rows pack[p·B·T + bt] = bt·R + (first head of p)/perRank,
 *   and the rows from rank k land on head rows (b·P + k)·T + t (contiguous chunks when B = 1);
 * - to the sequence side, the same two maps swapped; replicated kv heads (P % G == 0) receive
 *   several copies of a row, which the gradients sum in source order.
 */
export interface A2AMaps {
  toHeads: RowMap;
  toSeq: RowMap;
  /** A sequence-side row has several sources: only a summing exchange back is defined. */
  replicated: boolean;
}

export function a2aMaps(part: A2APart, B: number, T: number, P: number): A2AMaps {
  const { heads, perRank, replicated } = part.split;
  const R = heads / perRank;
  const BT = B * T;
  const pack = new Int32Array(P * BT);
  for (let p = 0; p < P; p++) {
    const h = part.split.first(p) / perRank;
    for (let bt = 0; bt < BT; bt++) pack[p * BT + bt] = bt * R + h;
  }
  let head: Int32Array | null = null;
  if (B > 1) {
    head = new Int32Array(P * BT);
    for (let k = 0; k < P; k++) for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) head[k * BT + b * T + t] = (b * P + k) * T + t;
  }
  const row = perRank * part.row;
  return { toHeads: { row, rows: BT, send: pack, recv: head }, toSeq: { row, rows: BT, send: head, recv: pack }, replicated };
}
