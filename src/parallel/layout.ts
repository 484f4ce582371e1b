/**
 * Sequence layouts: which GLOBAL positions each rank of a sequence-parallel group holds, in local
 * order (algorithms.md §2.3, §2.4, §8.3), and the permutations between global token order and the
 * rank-major "sharded" order. Masks and RoPE always use the global positions a layout reports, so a
 * reordered layout changes where tokens live, never what attention computes.
 *
 * A layout is made of `chunks` equal contiguous runs per rank (1 for contiguous and stripe-as-one
 * run of strided positions, 2 for zigzag); the ring schemes rotate whole ranks' blocks and pick
 * (query chunk, key chunk) tiles by these runs.
 */
import type { Buf } from '../tensor/dtype.js';
import { allocLike } from '../tensor/dtype.js';
import type { SeqLayout } from './types.js';

export type LayoutKind = 'contiguous' | 'zigzag' | 'stripe' | 'hybrid';

/** A SeqLayout that also says how a rank's tokens split into equal runs (chunks). */
export interface ChunkedLayout extends SeqLayout {
  readonly kind: LayoutKind;
  /** Tokens per rank, S / P. */
  readonly T: number;
  /** Equal runs per rank: local tokens [c·T/chunks, (c+1)·T/chunks) form chunk c. */
  readonly chunks: number;
}

function checkInt(what: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${what}: ${name}=${v} must be a positive integer`);
}

function make(kind: LayoutKind, S: number, P: number, chunks: number, at: (rank: number, i: number) => number): ChunkedLayout {
  const T = S / P;
  const cache = new Map<number, Int32Array>();
  return {
    kind,
    S,
    P,
    T,
    chunks,
    positions(rank: number): Int32Array {
      if (!Number.isInteger(rank) || rank < 0 || rank >= P) throw new Error(`${kind} layout: rank ${rank} outside [0, ${P})`);
      let p = cache.get(rank);
      if (!p) {
        p = new Int32Array(T);
        for (let i = 0; i < T; i++) p[i] = at(rank, i);
        cache.set(rank, p);
      }
      // A copy: callers may keep or modify it without corrupting the layout.
      return p.slice();
    },
  };
}

/** Rank r holds positions [r·S/P, (r+1)·S/P). `what` names the scheme in errors. */
export function contiguousLayout(S: number, P: number, what = 'contiguous'): ChunkedLayout {
  checkInt(what, 'S', S);
  checkInt(what, 'sp', P);
  if (S % P !== 0) throw new Error(`${what}: S=${S} not divisible by sp=${P}`);
  const T = S / P;
  return make('contiguous', S, P, 1, (r, i) => r * T + i);
}

/**
 * 2P chunks of S/(2P); rank r holds chunks r and 2P−1−r (an early chunk and its mirror), so under
 * a causal mask every rank has the same number of (query, key) pairs. Works for any P, odd too.
 */
export function zigzagLayout(S: number, P: number, what = 'zigzag'): ChunkedLayout {
  checkInt(what, 'S', S);
  checkInt(what, 'sp', P);
  if (S % (2 * P) !== 0) throw new Error(`${what}: S=${S} not divisible by 2*sp=${2 * P}`);
  const C = S / (2 * P);
  return make('zigzag', S, P, 2, (r, i) => (i < C ? r * C + i : (2 * P - 1 - r) * C + (i - C)));
}

/** Rank r holds r, r+P, r+2P, …: local index a is global a·P + r. */
export function stripeLayout(S: number, P: number, what = 'stripe'): ChunkedLayout {
  checkInt(what, 'S', S);
  checkInt(what, 'sp', P);
  if (S % P !== 0) throw new Error(`${what}: S=${S} not divisible by sp=${P}`);
  return make('stripe', S, P, 1, (r, i) => i * P + r);
}

/**
 * USP layout (algorithms.md §8.3) for P = u·r ranks numbered rank = ρ·u + υ (ulysses index υ is the
 * fast one, so ulysses groups are contiguous ranks): ring rank ρ owns the zigzag pair
 * [c_ρ, c_{2r−1−ρ}] of 2r chunks, cut into u equal contiguous pieces; ulysses rank υ holds piece υ.
 * After the ulysses all-to-all every rank holds the whole zigzag pair of its ring rank.
 */
export function hybridLayout(S: number, u: number, r: number, what = 'hybrid'): ChunkedLayout {
  checkInt(what, 'S', S);
  checkInt(what, 'ulysses', u);
  checkInt(what, 'ring', r);
  if (S % (2 * r) !== 0) throw new Error(`${what}: S=${S} not divisible by 2*ring=${2 * r}`);
  if (S % (u * r) !== 0) throw new Error(`${what}: S=${S} not divisible by sp=${u * r} (ulysses=${u} x ring=${r})`);
  const pair = zigzagLayout(S, r, what);
  const T = S / (u * r);
  const pairs = Array.from({ length: r }, (_, rho) => pair.positions(rho));
  return make('hybrid', S, u * r, 1, (rank, i) => pairs[Math.floor(rank / u)]![(rank % u) * T + i]!);
}

/**
 * `layout` over a sequence of realS real tokens padded to layout.S: the last S − realS positions
 * become −1, which the kernels treat as padding (kernels/types.ts AttnMask: never attended, attend
 * nothing, no gradient). Real tokens keep their global positions, so masks and RoPE are unchanged
 * and the padding has no effect on them.
 */
export function padLayout(layout: ChunkedLayout, realS: number): ChunkedLayout {
  if (!Number.isInteger(realS) || realS < 1 || realS > layout.S) throw new Error(`${layout.kind}: real length ${realS} outside [1, S=${layout.S}]`);
  if (realS === layout.S) return layout;
  return {
    ...layout,
    realS,
    positions(rank: number): Int32Array {
      const p = layout.positions(rank);
      for (let i = 0; i < p.length; i++) if (p[i]! >= realS) p[i] = -1;
      return p;
    },
  };
}

/**
 * Rank-major order: order[i] = global position of token i when the ranks' local tokens are
 * concatenated rank 0, 1, …, P−1. The sharded view of a global tensor is x[order[i]].
 */
export function layoutOrder(layout: SeqLayout): Int32Array {
  const T = layout.S / layout.P;
  const order = new Int32Array(layout.S);
  for (let r = 0; r < layout.P; r++) order.set(layout.positions(r), r * T);
  return order;
}

/** inv[order[i]] = i; throws unless order is a permutation of 0..n−1. */
export function inversePermutation(order: Int32Array): Int32Array {
  const inv = new Int32Array(order.length).fill(-1);
  for (let i = 0; i < order.length; i++) {
    const p = order[i]!;
    if (p < 0 || p >= order.length || inv[p] !== -1) throw new Error(`inversePermutation: not a permutation (position ${p} at ${i})`);
    inv[p] = i;
  }
  return inv;
}

/**
 * Gathers rows along the token dim: out[b, i, :] = x[b, idx[i], :], zeros where idx[i] < 0 (a
 * padded layout's padding). x: [B, Sx, row]; out: [B, idx.length, row].
 * With idx = layoutOrder this is global → sharded order; with its inverse, sharded → global.
 */
export function gatherTokens(x: Buf, idx: Int32Array, B: number, Sx: number, row: number, out?: Buf): Buf {
  const n = idx.length;
  const o = out ?? allocLike(x, B * n * row);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++) {
      if (idx[i]! < 0) {
        o.fill(0, (b * n + i) * row, (b * n + i + 1) * row);
        continue;
      }
      const src = (b * Sx + idx[i]!) * row;
      o.set(x.subarray(src, src + row), (b * n + i) * row);
    }
  }
  return o;
}

/** Rank `rank`'s shard of a global tensor: [B, realS, row] -shard(layout)-> [B, T, row] (padding: zeros). */
export function shardTokens(layout: SeqLayout, x: Buf, B: number, row: number, rank: number): Buf {
  return gatherTokens(x, layout.positions(rank), B, layout.realS ?? layout.S, row);
}

/** Inverse of shardTokens over all ranks: P × [B, T, row] -unshard(layout)-> [B, realS, row] (padding dropped). */
export function unshardTokens(layout: SeqLayout, shards: readonly Buf[], B: number, row: number): Buf {
  const { S: Sp, P } = layout;
  const S = layout.realS ?? Sp;
  const T = Sp / P;
  if (shards.length !== P) throw new Error(`unshardTokens: ${shards.length} shards for sp=${P}`);
  const out = allocLike(shards[0]!, B * S * row);
  for (let r = 0; r < P; r++) {
    const pos = layout.positions(r);
    const x = shards[r]!;
    if (x.length !== B * T * row) throw new Error(`unshardTokens: shard ${r} has ${x.length} elements, expected ${B * T * row}`);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < T; i++) {
        if (pos[i]! < 0) continue;
        const src = (b * T + i) * row;
        out.set(x.subarray(src, src + row), (b * S + pos[i]!) * row);
      }
    }
  }
  return out;
}

/** The real (non-padding) positions of a block, sorted: the key side of `attendsAny`. */
export function sortedKeys(pos: Int32Array): Int32Array {
  return pos.filter((p) => p >= 0).sort();
}

/**
 * Whether any query at positions `qs` (padding, −1, attends nothing) may attend a key of `keys`
 * (sortedKeys) under the causal flag and a left window (keys ≥ q − window).
 */
export function attendsAny(qs: Int32Array, keys: Int32Array, causal: boolean, window?: number): boolean {
  // does `keys` hold a position in [lo, hi]? (binary search for the first ≥ lo)
  const anyIn = (lo: number, hi: number): boolean => {
    let a = 0;
    let b = keys.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (keys[m]! < lo) a = m + 1;
      else b = m;
    }
    return a < keys.length && keys[a]! <= hi;
  };
  return qs.some((q) => q >= 0 && anyIn(window === undefined ? -Infinity : q - window, causal ? q : Infinity));
}

/**
 * Number of (query, key) pairs a causal (or full) mask, and a sliding window when given (keys ≥
 * p − window), allows for the given query positions over keys 0..S−1; padding (p < 0) has none.
 */
export function allowedPairs(qPos: Int32Array, S: number, causal: boolean, window?: number): number {
  let n = 0;
  for (const p of qPos) {
    if (p < 0) continue;
    const lo = window === undefined ? 0 : Math.max(0, p - window);
    n += (causal ? p + 1 : S) - lo;
  }
  return n;
}
