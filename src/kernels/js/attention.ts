/**
 * Attention block primitive of the js backend (algorithms.md §0.3, §0.4, §10): a query block against
 * one key/value block, masks judged on GLOBAL positions, folded into a running (out, lse).
 *
 * Layouts: q, out, dq, dOut [B, Tq, H, D]; k, v, dk, dv [B, Tk, G, D]; lse, delta [B, Tq, H];
 * qPos [Tq], kPos [Tk]. Query head h reads kv head floor(h / (H/G)).
 * All arithmetic is in JS doubles; buffers may be Float32Array or Float64Array.
 */
import type { Buf } from '../../tensor/dtype.js';
import type { AttnBlockDims, RowDims } from '../types.js';
import { BC, BR, PARTIAL, SKIP, allowed, axpy4, axpyAt, dot4, dotAt, loadTile, tileKind, tileRanges } from './attention-tile.js';

/** The query heads a call computes (AttnBlockDims.heads; default all), checked. */
export function headRange(d: AttnBlockDims): [number, number] {
  if (!d.heads) return [0, d.H];
  const { from, to } = d.heads;
  if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to <= d.H)) throw new RangeError(`attention: query heads [${from}, ${to}) are not within [0, ${d.H})`);
  return [from, to];
}

function checkDims(d: AttnBlockDims, qPos: Int32Array, kPos: Int32Array): void {
  if (d.H % d.G !== 0) throw new Error(`attention: H(${d.H}) % G(${d.G}) != 0`);
  if (qPos.length < d.Tq || kPos.length < d.Tk) {
    throw new Error(`attention: qPos/kPos lengths ${qPos.length}/${kPos.length} < Tq/Tk ${d.Tq}/${d.Tk}`);
  }
}

/**
 * Folds k, v into (out, lse) with the online softmax (FlashAttention-2: the division by ℓ is
 * deferred to the end of the query tile). The incoming state (out, lse) enters as m = lse, ℓ = 1,
 * Acc = out, or as empty when lse = −inf.
 */
export function attnForward(
  o: { out: Buf; lse: Buf },
  i: { q: Buf; k: Buf; v: Buf; qPos: Int32Array; kPos: Int32Array },
  d: AttnBlockDims,
): void {
  const { out, lse } = o;
  const { q, k, v, qPos, kPos } = i;
  const { B, Tq, Tk, H, G, D, scale, mask } = d;
  checkDims(d, qPos, kPos);
  const rep = H / G;
  const qr = tileRanges(qPos, Tq, BR);
  const kr = tileRanges(kPos, Tk, BC);
  // Per-call scratch (all f64, so the hot helpers stay monomorphic): scaled query tile [BR, D],
  // accumulator [BR, D], row max m / sum ℓ [BR], scores→P̃ of one row against one key tile [BC].
  const qs = new Float64Array(BR * D);
  const acc = new Float64Array(BR * D);
  const mRow = new Float64Array(BR);
  const lRow = new Float64Array(BR);
  const s = new Float64Array(BC);
  const kTile = new Float64Array(BC * D); // k, v of the current key tile and head, [BC, D]
  const vTile = new Float64Array(BC * D);
  const qStride = H * D; // between consecutive tokens of one head in q/out
  const kStride = G * D;
  const [h0, h1] = headRange(d);
  for (let b = 0; b < B; b++) {
    for (let h = h0; h < h1; h++) {
      const kvBase = b * Tk * kStride + Math.floor(h / rep) * D;
      for (let qt = 0, i0 = 0; i0 < Tq; qt++, i0 += BR) {
        const nr = Math.min(BR, Tq - i0);
        const qBase = (b * Tq + i0) * qStride + h * D;
        const lBase = (b * Tq + i0) * H + h;
        // Load the running state and the scaled queries of this tile.
        for (let r = 0; r < nr; r++) {
          const l0 = lse[lBase + r * H]!;
          const qo = qBase + r * qStride;
          const a = r * D;
          if (l0 === -Infinity) {
            mRow[r] = -Infinity;
            lRow[r] = 0;
            for (let c = 0; c < D; c++) acc[a + c] = 0;
          } else {
            mRow[r] = l0;
            lRow[r] = 1;
            for (let c = 0; c < D; c++) acc[a + c] = out[qo + c]!;
          }
          for (let c = 0; c < D; c++) qs[a + c] = q[qo + c]! * scale;
        }
        let touched = false;
        for (let kt = 0, j0 = 0; j0 < Tk; kt++, j0 += BC) {
          const kind = tileKind(qr, qt, kr, kt, mask);
          if (kind === SKIP) continue;
          touched = true;
          const nc = Math.min(BC, Tk - j0);
          const kBase = kvBase + j0 * kStride;
          loadTile(kTile, k, kBase, kStride, nc, D);
          loadTile(vTile, v, kBase, kStride, nc, D);
          for (let r = 0; r < nr; r++) {
            const a = r * D;
            // Scores of this row against the tile, four keys per pass over q; then the mask (−inf).
            let c = 0;
            for (; c + 3 < nc; c += 4) dot4(s, c, qs, a, kTile, D);
            for (; c < nc; c++) s[c] = dotAt(qs, a, kTile, c * D, D);
            if (kind === PARTIAL) {
              const qp = qPos[i0 + r]!;
              for (c = 0; c < nc; c++) if (!allowed(qp, kPos[j0 + c]!, mask)) s[c] = -Infinity;
            }
            let mx = -Infinity;
            for (c = 0; c < nc; c++) if (s[c]! > mx) mx = s[c]!;
            if (mx === -Infinity) continue; // nothing allowed in this tile for this row
            const mOld = mRow[r]!;
            const mNew = mOld > mx ? mOld : mx;
            if (mNew !== mOld) {
              const alpha = Math.exp(mOld - mNew); // 0 when mOld = −inf
              lRow[r] = lRow[r]! * alpha;
              for (let e = 0; e < D; e++) acc[a + e] = acc[a + e]! * alpha;
              mRow[r] = mNew;
            }
            // Probabilities in place of the scores (masked: exp(−inf) = 0), then Acc += P̃ · V.
            let sum = 0;
            for (c = 0; c < nc; c++) {
              const p = Math.exp(s[c]! - mNew);
              s[c] = p;
              sum += p;
            }
            lRow[r] = lRow[r]! + sum;
            for (c = 0; c + 3 < nc; c += 4) axpy4(acc, a, s, c, vTile, D);
            for (; c < nc; c++) axpyAt(acc, a, vTile, c * D, s[c]!, D);
          }
        }
        if (!touched) continue;
        // Normalise and store rows that have any key at all (ℓ > 0); others stay as they were.
        for (let r = 0; r < nr; r++) {
          const l = lRow[r]!;
          if (!(l > 0)) continue;
          const inv = 1 / l;
          const a = r * D;
          const qo = qBase + r * qStride;
          for (let e = 0; e < D; e++) out[qo + e] = acc[a + e]! * inv;
          lse[lBase + r * H] = mRow[r]! + Math.log(l);
        }
      }
    }
  }
}

/**
 * Backward of one block from the FINAL out/lse and delta (§0.4): P = exp(τ q·k − lse) recomputed,
 * dv += Pᵀ dOut, dS = P ∘ (dOut·vᵀ − delta), dq += τ dS k, dk += τ dSᵀ q. Loops run per kv head and
 * key tile so that dk/dv of the tile ([BC, D] each) accumulate in doubles over all query heads
 * sharing that kv head, then are added once to the caller's buffers.
 */
export function attnBackward(
  g: { dq: Buf; dk: Buf; dv: Buf },
  i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf; delta: Buf; qPos: Int32Array; kPos: Int32Array },
  d: AttnBlockDims,
): void {
  const { dq, dk, dv } = g;
  const { dOut, q, k, v, lse, delta, qPos, kPos } = i;
  const { B, Tq, Tk, H, G, D, scale, mask } = d;
  checkDims(d, qPos, kPos);
  const rep = H / G;
  const qr = tileRanges(qPos, Tq, BR);
  const kr = tileRanges(kPos, Tk, BC);
  // Per-call scratch (all f64, so the hot helpers stay monomorphic): k, v, dk, dv of one key tile
  // [BC, D]; q, dOut, dq of one query row [D]; scores→P and dP→τ·dS of that row vs the tile [BC].
  const kTile = new Float64Array(BC * D);
  const vTile = new Float64Array(BC * D);
  const dkAcc = new Float64Array(BC * D);
  const dvAcc = new Float64Array(BC * D);
  const qRow = new Float64Array(D);
  const doRow = new Float64Array(D);
  const dqRow = new Float64Array(D);
  const pRow = new Float64Array(BC);
  const dsRow = new Float64Array(BC);
  const kStride = G * D;
  const [h0, h1] = headRange(d);
  for (let b = 0; b < B; b++) {
    // the kv groups of heads [h0, h1), each with its heads in that range
    for (let gh = Math.floor(h0 / rep); gh * rep < h1; gh++) {
      for (let kt = 0, j0 = 0; j0 < Tk; kt++, j0 += BC) {
        const nc = Math.min(BC, Tk - j0);
        const kBase = (b * Tk + j0) * kStride + gh * D;
        let touched = false;
        for (let h = Math.max(h0, gh * rep); h < Math.min(h1, (gh + 1) * rep); h++) {
          for (let qt = 0, i0 = 0; i0 < Tq; qt++, i0 += BR) {
            const kind = tileKind(qr, qt, kr, kt, mask);
            if (kind === SKIP) continue;
            if (!touched) {
              touched = true;
              loadTile(kTile, k, kBase, kStride, nc, D);
              loadTile(vTile, v, kBase, kStride, nc, D);
              dkAcc.fill(0);
              dvAcc.fill(0);
            }
            const nr = Math.min(BR, Tq - i0);
            for (let r = 0; r < nr; r++) {
              const row = (b * Tq + i0 + r) * H + h; // index into lse/delta
              const l = lse[row]!;
              if (l === -Infinity) continue; // padded / fully masked row: no gradient
              const dl = delta[row]!;
              const qo = row * D; // == ((b*Tq + t)*H + h)*D
              for (let e = 0; e < D; e++) {
                qRow[e] = q[qo + e]!;
                doRow[e] = dOut[qo + e]!;
              }
              // S = q·kᵀ and dP = dOut·vᵀ for the whole tile, four keys per pass.
              let c = 0;
              for (; c + 3 < nc; c += 4) {
                dot4(pRow, c, qRow, 0, kTile, D);
                dot4(dsRow, c, doRow, 0, vTile, D);
              }
              for (; c < nc; c++) {
                pRow[c] = dotAt(qRow, 0, kTile, c * D, D);
                dsRow[c] = dotAt(doRow, 0, vTile, c * D, D);
              }
              const qp = qPos[i0 + r]!;
              for (c = 0; c < nc; c++) {
                const p = kind === PARTIAL && !allowed(qp, kPos[j0 + c]!, mask) ? 0 : Math.exp(pRow[c]! * scale - l);
                pRow[c] = p;
                dsRow[c] = p * (dsRow[c]! - dl) * scale; // τ·dS, shared by dq and dk
              }
              // dv += P dOut, dk += τ dS q (one key row each); dq += τ dS k (four keys per pass).
              for (c = 0; c < nc; c++) {
                const p = pRow[c]!;
                if (p === 0) continue;
                const ds = dsRow[c]!;
                const a = c * D;
                for (let e = 0; e < D; e++) {
                  dvAcc[a + e] = dvAcc[a + e]! + p * doRow[e]!;
                  dkAcc[a + e] = dkAcc[a + e]! + ds * qRow[e]!;
                }
              }
              dqRow.fill(0);
              for (c = 0; c + 3 < nc; c += 4) axpy4(dqRow, 0, dsRow, c, kTile, D);
              for (; c < nc; c++) axpyAt(dqRow, 0, kTile, c * D, dsRow[c]!, D);
              for (let e = 0; e < D; e++) dq[qo + e] = dq[qo + e]! + dqRow[e]!;
            }
          }
        }
        if (!touched) continue;
        for (let c = 0; c < nc; c++) {
          const ko = kBase + c * kStride;
          const a = c * D;
          for (let e = 0; e < D; e++) {
            dk[ko + e] = dk[ko + e]! + dkAcc[a + e]!;
            dv[ko + e] = dv[ko + e]! + dvAcc[a + e]!;
          }
        }
      }
    }
  }
}

/** delta[b,t,h] = Σ_d dOut[b,t,h,d] · out[b,t,h,d]. dOut, out: [B, T, H, D]; delta: [B, T, H]. */
export function attnDelta(o: { delta: Buf }, i: { dOut: Buf; out: Buf }, d: RowDims): void {
  const { delta } = o;
  const { dOut, out } = i;
  const rows = d.B * d.T * d.H;
  const D = d.D;
  for (let r = 0; r < rows; r++) {
    const a = r * D;
    let s = 0;
    for (let e = 0; e < D; e++) s += dOut[a + e]! * out[a + e]!;
    delta[r] = s;
  }
}

/**
 * (out, lse) ← merge((out, lse), (out2, lse2)) per row (§0.3), out: [B, T, H, D], lse: [B, T, H].
 * lse2 = −inf leaves the row unchanged; lse = −inf takes the second part; otherwise the max/log1p
 * form keeps every exponent ≤ 0, so large logits cannot overflow.
 */
export function attnMerge(o: { out: Buf; lse: Buf }, i: { out2: Buf; lse2: Buf }, d: RowDims): void {
  const { out, lse } = o;
  const { out2, lse2 } = i;
  const rows = d.B * d.T * d.H;
  const D = d.D;
  for (let r = 0; r < rows; r++) {
    const l2 = lse2[r]!;
    if (l2 === -Infinity) continue;
    const l1 = lse[r]!;
    const a = r * D;
    if (l1 === -Infinity) {
      for (let e = 0; e < D; e++) out[a + e] = out2[a + e]!;
      lse[r] = l2;
      continue;
    }
    const mx = l1 > l2 ? l1 : l2;
    const mn = l1 > l2 ? l2 : l1;
    const l = mx + Math.log1p(Math.exp(mn - mx));
    const w1 = Math.exp(l1 - l);
    const w2 = Math.exp(l2 - l);
    for (let e = 0; e < D; e++) out[a + e] = w1 * out[a + e]! + w2 * out2[a + e]!;
    lse[r] = l;
  }
}
