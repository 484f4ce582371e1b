/**
 * Tile machinery of the js attention kernel: mask rule, tile classification from position ranges,
 * and the small f64 vector loops the hot paths are built from. Shapes: a tile is [rows, n] with
 * row stride n (n = D), in Float64Array scratch.
 */
import type { Buf } from '../../tensor/dtype.js';
import type { AttnMask } from '../types.js';

/**
 * Query tile rows × key tile columns. A key tile is copied to f64 scratch: 64 × D = 64 is 32 KiB
 * for k (and for v), L1/L2 resident. Timings barely change between 32 and 128.
 */
export const BR = 64;
export const BC = 64;

/** Tile kinds: nothing allowed, everything allowed (no per-element test), or test each pair. */
export const SKIP = 0;
export const FULL = 1;
export const PARTIAL = 2;

/** The AttnMask rule of types.ts for one (query, key) pair. */
export function allowed(qp: number, kp: number, m: AttnMask): boolean {
  return (
    kp >= 0 &&
    qp >= 0 &&
    (!m.causal || kp <= qp) &&
    (m.windowLeft === undefined || kp >= qp - m.windowLeft) &&
    (m.windowRight === undefined || kp <= qp + m.windowRight)
  );
}

/**
 * Per tile of `pos` (size `tile`): min and max over non-negative positions, and whether the tile
 * holds padding. Positions need not be sorted. Returns [min, max, hasPad] × nTiles (min > max when
 * the tile is all padding).
 */
export function tileRanges(pos: Int32Array, n: number, tile: number): Float64Array {
  const nt = Math.ceil(n / tile);
  const r = new Float64Array(3 * nt);
  for (let t = 0; t < nt; t++) {
    let lo = Infinity;
    let hi = -Infinity;
    let pad = 0;
    for (let i = t * tile, e = Math.min(n, i + tile); i < e; i++) {
      const p = pos[i]!;
      if (p < 0) pad = 1;
      else {
        if (p < lo) lo = p;
        if (p > hi) hi = p;
      }
    }
    r[3 * t] = lo;
    r[3 * t + 1] = hi;
    r[3 * t + 2] = pad;
  }
  return r;
}

/** Classifies the (query tile, key tile) pair from position ranges alone. */
export function tileKind(qr: Float64Array, qt: number, kr: Float64Array, kt: number, m: AttnMask): number {
  const qLo = qr[3 * qt]!, qHi = qr[3 * qt + 1]!, kLo = kr[3 * kt]!, kHi = kr[3 * kt + 1]!;
  if (qLo > qHi || kLo > kHi) return SKIP; // a side is all padding
  let full = qr[3 * qt + 2] === 0 && kr[3 * kt + 2] === 0;
  if (m.causal) {
    if (kLo > qHi) return SKIP; // every key after every query
    full &&= kHi <= qLo;
  }
  if (m.windowLeft !== undefined) {
    if (kHi < qLo - m.windowLeft) return SKIP;
    full &&= kLo >= qHi - m.windowLeft;
  }
  if (m.windowRight !== undefined) {
    if (kLo > qHi + m.windowRight) return SKIP;
    full &&= kHi <= qLo + m.windowRight;
  }
  return full ? FULL : PARTIAL;
}

/**
 * Σ_e x[xo+e]·y[yo+e] over n elements; four partial sums break the add dependency chain. Hot loops
 * only ever see Float64Array scratch (tiles are copied in), so these helpers stay monomorphic
 * whether the caller's buffers are f32 or f64.
 */
export function dotAt(x: Float64Array, xo: number, y: Float64Array, yo: number, n: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let e = 0;
  for (; e + 3 < n; e += 4) {
    s0 += x[xo + e]! * y[yo + e]!;
    s1 += x[xo + e + 1]! * y[yo + e + 1]!;
    s2 += x[xo + e + 2]! * y[yo + e + 2]!;
    s3 += x[xo + e + 3]! * y[yo + e + 3]!;
  }
  for (; e < n; e++) s0 += x[xo + e]! * y[yo + e]!;
  return s0 + s1 + (s2 + s3);
}

/** s[c+u] = Σ_e x[xo+e]·kt[(c+u)·n+e] for u < 4: one pass over x for four rows of kt. */
export function dot4(s: Float64Array, c: number, x: Float64Array, xo: number, kt: Float64Array, n: number): void {
  const o0 = c * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let e = 0; e < n; e++) {
    const xe = x[xo + e]!;
    s0 += xe * kt[o0 + e]!;
    s1 += xe * kt[o1 + e]!;
    s2 += xe * kt[o2 + e]!;
    s3 += xe * kt[o3 + e]!;
  }
  s[c] = s0;
  s[c + 1] = s1;
  s[c + 2] = s2;
  s[c + 3] = s3;
}

/** acc[ao+e] += Σ_u p[c+u]·vt[(c+u)·n+e] for u < 4: one pass over the accumulator for four keys. */
export function axpy4(acc: Float64Array, ao: number, p: Float64Array, c: number, vt: Float64Array, n: number): void {
  const p0 = p[c]!, p1 = p[c + 1]!, p2 = p[c + 2]!, p3 = p[c + 3]!;
  const o0 = c * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
  for (let e = 0; e < n; e++) {
    acc[ao + e] = acc[ao + e]! + (p0 * vt[o0 + e]! + p1 * vt[o1 + e]! + (p2 * vt[o2 + e]! + p3 * vt[o3 + e]!));
  }
}

/** acc[ao+e] += a·x[xo+e] over n elements. */
export function axpyAt(acc: Float64Array, ao: number, x: Float64Array, xo: number, a: number, n: number): void {
  for (let e = 0; e < n; e++) acc[ao + e] = acc[ao + e]! + a * x[xo + e]!;
}

/** dst[c·n + e] = src[base + c·stride + e] for c < rows, e < n: a tile of one head into scratch. */
export function loadTile(dst: Float64Array, src: Buf, base: number, stride: number, rows: number, n: number): void {
  for (let c = 0; c < rows; c++) {
    const so = base + c * stride;
    const a = c * n;
    for (let e = 0; e < n; e++) dst[a + e] = src[so + e]!;
  }
}
