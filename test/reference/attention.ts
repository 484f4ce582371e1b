/**
 * Naive float64 attention, written for obviousness rather than speed: the full score matrix of
 * every (b, h) is materialised, softmaxed and multiplied out. The oracle for the attention kernels.
 * Layouts: q, out, dOut [B, Tq, H, D]; k, v [B, Tk, G, D]; lse [B, Tq, H].
 */
import type { AttnBlockDims, AttnMask } from '../../src/kernels/types.js';

/** The mask rule, spelled out exactly as in the AttnMask doc comment. */
export function refAllowed(qp: number, kp: number, m: AttnMask): boolean {
  if (kp < 0 || qp < 0) return false;
  if (m.causal && kp > qp) return false;
  if (m.windowLeft !== undefined && kp < qp - m.windowLeft) return false;
  if (m.windowRight !== undefined && kp > qp + m.windowRight) return false;
  return true;
}

const qIdx = (d: AttnBlockDims, b: number, t: number, h: number): number => ((b * d.Tq + t) * d.H + h) * d.D;
const kIdx = (d: AttnBlockDims, b: number, j: number, h: number): number =>
  ((b * d.Tk + j) * d.G + Math.floor(h / (d.H / d.G))) * d.D;

/** P[t][j] (softmax probabilities, 0 where masked) and lse[t] for one (b, h). */
function probs(q: ArrayLike<number>, k: ArrayLike<number>, qPos: Int32Array, kPos: Int32Array, d: AttnBlockDims, b: number, h: number) {
  const P: number[][] = [];
  const lse: number[] = [];
  for (let t = 0; t < d.Tq; t++) {
    const s: number[] = [];
    for (let j = 0; j < d.Tk; j++) {
      if (!refAllowed(qPos[t]!, kPos[j]!, d.mask)) {
        s.push(-Infinity);
        continue;
      }
      const qo = qIdx(d, b, t, h);
      const ko = kIdx(d, b, j, h);
      let dot = 0;
      for (let e = 0; e < d.D; e++) dot += q[qo + e]! * k[ko + e]!;
      s.push(dot * d.scale);
    }
    const mx = Math.max(...s);
    if (mx === -Infinity) {
      P.push(s.map(() => 0));
      lse.push(-Infinity);
      continue;
    }
    const ex = s.map((x) => Math.exp(x - mx));
    const sum = ex.reduce((a, x) => a + x, 0);
    P.push(ex.map((x) => x / sum));
    lse.push(mx + Math.log(sum));
  }
  return { P, lse };
}

export interface RefAttnInputs {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  qPos: Int32Array;
  kPos: Int32Array;
}

/** out = softmax(τ q kᵀ + mask) v; fully masked rows give out = 0, lse = −inf. */
export function refAttention(i: RefAttnInputs, d: AttnBlockDims): { out: Float64Array; lse: Float64Array } {
  const out = new Float64Array(d.B * d.Tq * d.H * d.D);
  const lse = new Float64Array(d.B * d.Tq * d.H);
  for (let b = 0; b < d.B; b++) {
    for (let h = 0; h < d.H; h++) {
      const { P, lse: l } = probs(i.q, i.k, i.qPos, i.kPos, d, b, h);
      for (let t = 0; t < d.Tq; t++) {
        lse[(b * d.Tq + t) * d.H + h] = l[t]!;
        const qo = qIdx(d, b, t, h);
        for (let j = 0; j < d.Tk; j++) {
          const ko = kIdx(d, b, j, h);
          for (let e = 0; e < d.D; e++) out[qo + e] += P[t]![j]! * i.v[ko + e]!;
        }
      }
    }
  }
  return { out, lse };
}

/**
 * Backward of refAttention given dOut: materialises dP = dOut vᵀ and dS = P ∘ (dP − rowsum(P ∘ dP)),
 * then dq = τ dS k, dk = τ dSᵀ q, dv = Pᵀ dOut (dk, dv summed over the query heads of a kv head).
 */
export function refAttentionBackward(i: RefAttnInputs & { dOut: ArrayLike<number> }, d: AttnBlockDims) {
  const dq = new Float64Array(d.B * d.Tq * d.H * d.D);
  const dk = new Float64Array(d.B * d.Tk * d.G * d.D);
  const dv = new Float64Array(d.B * d.Tk * d.G * d.D);
  for (let b = 0; b < d.B; b++) {
    for (let h = 0; h < d.H; h++) {
      const { P } = probs(i.q, i.k, i.qPos, i.kPos, d, b, h);
      for (let t = 0; t < d.Tq; t++) {
        const qo = qIdx(d, b, t, h);
        const dP: number[] = [];
        for (let j = 0; j < d.Tk; j++) {
          const ko = kIdx(d, b, j, h);
          let s = 0;
          for (let e = 0; e < d.D; e++) s += i.dOut[qo + e]! * i.v[ko + e]!;
          dP.push(s);
        }
        let rowDot = 0;
        for (let j = 0; j < d.Tk; j++) rowDot += P[t]![j]! * dP[j]!;
        for (let j = 0; j < d.Tk; j++) {
          const p = P[t]![j]!;
          const dS = p * (dP[j]! - rowDot);
          const ko = kIdx(d, b, j, h);
          for (let e = 0; e < d.D; e++) {
            dq[qo + e] += d.scale * dS * i.k[ko + e]!;
            dk[ko + e] += d.scale * dS * i.q[qo + e]!;
            dv[ko + e] += p * i.dOut[qo + e]!;
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
