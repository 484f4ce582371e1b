/**
 * Small pieces shared by the schemes: chunk split/join along the token dim, scratch accounting,
 * and the head splits Ulysses uses (including GQA key/value head replication).
 */
import type { Buf } from '../tensor/dtype.js';
import { allocLike } from '../tensor/dtype.js';

/**
 * Counts the bytes a scheme allocates for one forward or backward call (its transient scratch);
 * the largest call so far is `peakBytes`. Buffers are plain typed arrays, so "peak" is the sum of
 * what one call allocates — all of it is live until the call returns.
 */
export class Scratch {
  peakBytes = 0;
  private cur = 0;

  begin(): void {
    this.cur = 0;
  }

  alloc(like: Buf, n: number): Buf {
    const b = allocLike(like, n);
    this.cur += b.byteLength;
    if (this.cur > this.peakBytes) this.peakBytes = this.cur;
    return b;
  }

  /** A copy of x counted as scratch. */
  copy(x: Buf): Buf {
    const b = this.alloc(x, x.length);
    b.set(x);
    return b;
  }
}

/**
 * [B, T, row] -split-> c × [B, T/c, row]: chunk i holds local tokens [i·T/c, (i+1)·T/c). With c = 1
 * the input itself is returned (no copy), so callers can accumulate into it directly.
 */
export function splitChunks(x: Buf, B: number, T: number, row: number, c: number, scratch: Scratch): Buf[] {
  if (c === 1) return [x];
  const Tc = T / c;
  const parts: Buf[] = [];
  for (let i = 0; i < c; i++) {
    const p = scratch.alloc(x, B * Tc * row);
    for (let b = 0; b < B; b++) p.set(x.subarray((b * T + i * Tc) * row, (b * T + (i + 1) * Tc) * row), b * Tc * row);
    parts.push(p);
  }
  return parts;
}

/** c × [B, T/c, row] -join-> [B, T, row], overwriting (`add` = false) or accumulating into out. */
export function joinChunks(out: Buf, parts: readonly Buf[], B: number, T: number, row: number, add: boolean): void {
  const c = parts.length;
  const Tc = T / c;
  for (let i = 0; i < c; i++) {
    const p = parts[i]!;
    if (p === out) {
      if (!add) continue; // c = 1 view: already in place
      throw new Error('joinChunks: cannot add a buffer into itself');
    }
    for (let b = 0; b < B; b++) {
      const src = b * Tc * row;
      const dst = (b * T + i * Tc) * row;
      const n = Tc * row;
      if (add) for (let e = 0; e < n; e++) out[dst + e] = out[dst + e]! + p[src + e]!;
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

/** Elements one rank sends to each destination for these parts (T tokens per rank). */
export function a2aChunk(parts: readonly A2APart[], B: number, T: number): number {
  let n = 0;
  for (const p of parts) n += B * T * p.split.perRank * p.row;
  return n;
}

/**
 * Packs sequence-sharded tensors for the sequence→head all-to-all: send[p] = for each part, the
 * heads of destination p for my T tokens, [B, T, perRank, row].
 */
export function packSeqToHead(send: Buf, xs: readonly Buf[], parts: readonly A2APart[], B: number, T: number, P: number): void {
  const n = a2aChunk(parts, B, T);
  for (let p = 0; p < P; p++) {
    let off = p * n;
    parts.forEach((part, k) => {
      const x = xs[k]!;
      const { heads, perRank } = part.split;
      const h0 = part.split.first(p);
      const row = part.row;
      const len = perRank * row;
      for (let bt = 0; bt < B * T; bt++) {
        const src = (bt * heads + h0) * row;
        send.set(x.subarray(src, src + len), off + bt * len);
      }
      off += B * T * len;
    });
  }
}

/**
 * Unpacks the sequence→head all-to-all: recv[src] holds the tokens of group rank src, so the
 * result [B, P·T, perRank, row] is source-major along the token dim (positions: the group's
 * positions concatenated in rank order).
 */
export function unpackSeqToHead(ys: readonly Buf[], recv: Buf, parts: readonly A2APart[], B: number, T: number, P: number): void {
  const n = a2aChunk(parts, B, T);
  for (let src = 0; src < P; src++) {
    let off = src * n;
    parts.forEach((part, k) => {
      const y = ys[k]!;
      const len = part.split.perRank * part.row;
      for (let b = 0; b < B; b++) {
        const from = off + b * T * len;
        y.set(recv.subarray(from, from + T * len), (b * P * T + src * T) * len);
      }
      off += B * T * len;
    });
  }
}

/** Packs head-sharded tensors [B, P·T, perRank, row] for the head→sequence all-to-all. */
export function packHeadToSeq(send: Buf, ys: readonly Buf[], parts: readonly A2APart[], B: number, T: number, P: number): void {
  const n = a2aChunk(parts, B, T);
  for (let dst = 0; dst < P; dst++) {
    let off = dst * n;
    parts.forEach((part, k) => {
      const y = ys[k]!;
      const len = part.split.perRank * part.row;
      for (let b = 0; b < B; b++) {
        const from = (b * P * T + dst * T) * len;
        send.set(y.subarray(from, from + T * len), off + b * T * len);
      }
      off += B * T * len;
    });
  }
}

/**
 * Unpacks the head→sequence all-to-all into [B, T, heads, row]: recv[src] holds the heads of rank
 * src. `add` accumulates (gradients: replicated kv heads sum over their copies), else overwrites.
 */
export function unpackHeadToSeq(xs: readonly Buf[], recv: Buf, parts: readonly A2APart[], B: number, T: number, P: number, add: boolean): void {
  const n = a2aChunk(parts, B, T);
  for (let src = 0; src < P; src++) {
    let off = src * n;
    parts.forEach((part, k) => {
      const x = xs[k]!;
      const { heads, perRank } = part.split;
      const h0 = part.split.first(src);
      const row = part.row;
      const len = perRank * row;
      for (let bt = 0; bt < B * T; bt++) {
        const dst = (bt * heads + h0) * row;
        const from = off + bt * len;
        if (add) for (let e = 0; e < len; e++) x[dst + e] = x[dst + e]! + recv[from + e]!;
        else x.set(recv.subarray(from, from + len), dst);
      }
      off += B * T * len;
    });
  }
}
