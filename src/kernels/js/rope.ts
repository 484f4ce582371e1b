/**
 * Rotary position embedding, half-split pairs: element j rotates with element j + D/2 by the angle
 *   θ(t, j) = pos[t] · base^(−2j/D),  j < D/2,
 * where pos [T] holds the GLOBAL positions of the local tokens (after zigzag/stripe reordering they
 * are not contiguous; DESIGN §8). x, out, dOut, dx: [B, T, H, D].
 * cos/sin of one token's D/2 angles are computed once per call into scratch [2, D/2] and reused over
 * B and H.
 */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

type RopeDims = { B: number; T: number; H: number; D: number; base: number };

function check(d: RopeDims, pos: Int32Array, what: string): void {
  dim(d.B, `${what} B`);
  dim(d.T, `${what} T`);
  dim(d.H, `${what} H`);
  dim(d.D, `${what} D`);
  if (d.D % 2 !== 0) throw new RangeError(`${what}: head dim D = ${d.D} must be even`);
  if (!(d.base > 0)) throw new RangeError(`${what}: base must be positive, got ${d.base}`);
  need(pos, d.T, `${what} pos [T]`);
}

/** invFreq[j] = base^(−2j/D) for j < D/2. */
function inverseFrequencies(D: number, base: number): Float64Array {
  const half = D / 2;
  const f = new Float64Array(half);
  for (let j = 0; j < half; j++) f[j] = Math.pow(base, (-2 * j) / D);
  return f;
}

/**
 * Rotates every (j, j + D/2) pair by +θ (forward, sign = 1) or −θ (backward: Rᵀ = R(−θ), sign = −1).
 * accumulate: dst += R·src, else dst = R·src (dst may alias src then: each pair is read before written).
 */
function rotate(dst: Buf, src: Buf, pos: Int32Array, d: RopeDims, sign: 1 | -1, accumulate: boolean): void {
  const { B, T, H, D } = d;
  const half = D / 2;
  const invFreq = inverseFrequencies(D, d.base);
  const cs = new Float64Array(D); // [cos(θ_j) | sign·sin(θ_j)] of the current token
  for (let t = 0; t < T; t++) {
    const p = pos[t]!;
    for (let j = 0; j < half; j++) {
      const a = p * invFreq[j]!;
      cs[j] = Math.cos(a);
      cs[half + j] = sign * Math.sin(a);
    }
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D;
        for (let j = 0; j < half; j++) {
          const c = cs[j]!;
          const s = cs[half + j]!;
          const x0 = src[o + j]!;
          const x1 = src[o + half + j]!;
          const y0 = x0 * c - x1 * s;
          const y1 = x0 * s + x1 * c;
          if (accumulate) {
            dst[o + j] += y0;
            dst[o + half + j] += y1;
          } else {
            dst[o + j] = y0;
            dst[o + half + j] = y1;
          }
        }
      }
    }
  }
}

/** out = R(θ)·x per pair. out may alias x. */
export function ropeForward(o: { out: Buf }, i: { x: Buf; pos: Int32Array }, d: RopeDims): void {
  check(d, i.pos, 'rope');
  const n = d.B * d.T * d.H * d.D;
  need(i.x, n, 'rope x [B, T, H, D]');
  need(o.out, n, 'rope out [B, T, H, D]');
  rotate(o.out, i.x, i.pos, d, 1, false);
}

/** dx += R(θ)ᵀ·dOut = R(−θ)·dOut per pair. dx must not alias dOut. */
export function ropeBackward(g: { dx: Buf }, i: { dOut: Buf; pos: Int32Array }, d: RopeDims & { overwrite?: boolean }): void {
  check(d, i.pos, 'ropeBackward');
  const n = d.B * d.T * d.H * d.D;
  need(i.dOut, n, 'ropeBackward dOut [B, T, H, D]');
  need(g.dx, n, 'ropeBackward dx [B, T, H, D]');
  if (g.dx.buffer === i.dOut.buffer && n > 0) {
    const a = g.dx.byteOffset;
    const b = i.dOut.byteOffset;
    const bytes = n * g.dx.BYTES_PER_ELEMENT;
    if (a < b + n * i.dOut.BYTES_PER_ELEMENT && b < a + bytes) throw new RangeError('ropeBackward: dx must not alias dOut');
  }
  rotate(g.dx, i.dOut, i.pos, d, -1, !d.overwrite);
}
