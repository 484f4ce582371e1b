/**
 * Dense matmul, weight stored [M, K] (out features, in features) as in a linear layer:
 *   out[N, M] = x[N, K] · weight[M, K]ᵀ (+ bias[M]).
 * Every sum runs in JS numbers (float64) and is rounded once when stored, so a float32 result is
 * the float64 one rounded, whatever K, M or N.
 *
 * Loop orders keep the innermost loop contiguous in memory, and register blocks of 2 rows of n by
 * 4 of m let each loaded element feed several multiply-adds (about 1.5× over a plain dot product):
 *   forward  n(×2), m(×4), k  — eight dot products over contiguous x and weight rows;
 *   dx       n(×2), m(×4), k  — i-k-j order into float64 row accumulators [2, K];
 *   dWeight  m(×4), n(×2), k  — float64 accumulators [4, K] for four rows of dWeight;
 *   dBias    n, m             — a float64 accumulator [M].
 * Scratch accumulators are allocated once per call (the interface passes no scratch).
 */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

type Dims = { N: number; K: number; M: number };

function checkDims(d: Dims, x: Buf, weight: Buf): void {
  dim(d.N, 'matmul N');
  dim(d.K, 'matmul K');
  dim(d.M, 'matmul M');
  need(x, d.N * d.K, 'matmul x [N, K]');
  need(weight, d.M * d.K, 'matmul weight [M, K]');
}

/** out[N, M] = x[N, K] · weight[M, K]ᵀ (+ bias[M]). Overwrites out. */
export function matmulForward(o: { out: Buf }, i: { x: Buf; weight: Buf; bias?: Buf | null }, d: Dims): void {
  const { out } = o;
  const { x, weight: w } = i;
  const bias = i.bias ?? null;
  const { N, K, M } = d;
  checkDims(d, x, w);
  need(out, N * M, 'matmul out [N, M]');
  if (bias) need(bias, M, 'matmul bias [M]');
  const M4 = M - (M % 4);
  let n = 0;
  for (; n + 1 < N; n += 2) {
    // rows n, n+1 of x against rows m..m+3 of weight: 8 float64 sums
    const xa = n * K;
    const xb = xa + K;
    const oa = n * M;
    const ob = oa + M;
    let m = 0;
    for (; m < M4; m += 4) {
      const w0 = m * K;
      const w1 = w0 + K;
      const w2 = w1 + K;
      const w3 = w2 + K;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
      for (let k = 0; k < K; k++) {
        const u = x[xa + k]!;
        const v = x[xb + k]!;
        const p0 = w[w0 + k]!;
        const p1 = w[w1 + k]!;
        const p2 = w[w2 + k]!;
        const p3 = w[w3 + k]!;
        a0 += u * p0; a1 += u * p1; a2 += u * p2; a3 += u * p3;
        b0 += v * p0; b1 += v * p1; b2 += v * p2; b3 += v * p3;
      }
      if (bias) {
        const c0 = bias[m]!, c1 = bias[m + 1]!, c2 = bias[m + 2]!, c3 = bias[m + 3]!;
        a0 += c0; a1 += c1; a2 += c2; a3 += c3;
        b0 += c0; b1 += c1; b2 += c2; b3 += c3;
      }
      out[oa + m] = a0; out[oa + m + 1] = a1; out[oa + m + 2] = a2; out[oa + m + 3] = a3;
      out[ob + m] = b0; out[ob + m + 1] = b1; out[ob + m + 2] = b2; out[ob + m + 3] = b3;
    }
    for (; m < M; m++) {
      const wo = m * K;
      let a = 0;
      let b = 0;
      for (let k = 0; k < K; k++) {
        const p = w[wo + k]!;
        a += x[xa + k]! * p;
        b += x[xb + k]! * p;
      }
      const c = bias ? bias[m]! : 0;
      out[oa + m] = a + c;
      out[ob + m] = b + c;
    }
  }
  if (n < N) {
    // odd last row: plain dot products
    const xo = n * K;
    const oo = n * M;
    for (let m = 0; m < M; m++) {
      const wo = m * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += x[xo + k]! * w[wo + k]!;
      out[oo + m] = bias ? s + bias[m]! : s;
    }
  }
}

/** dx[N,K] += dOut·W; dWeight[M,K] += dOutᵀ·x; dBias[M] += Σ_n dOut. Any gradient may be omitted. */
export function matmulBackward(
  g: { dx?: Buf | null; dWeight?: Buf | null; dBias?: Buf | null },
  i: { dOut: Buf; x: Buf; weight: Buf },
  d: Dims & { overwrite?: boolean },
): void {
  const { dOut, x, weight } = i;
  checkDims(d, x, weight);
  need(dOut, d.N * d.M, 'matmul dOut [N, M]');
  if (g.dx) backwardDx(g.dx, dOut, weight, d, !!d.overwrite);
  if (g.dWeight) backwardDWeight(g.dWeight, dOut, x, d);
  if (g.dBias) backwardDBias(g.dBias, dOut, d);
}

/** dx[n, k] (+)= Σ_m dOut[n, m] · w[m, k]; i-k-j order, rows n, n+1 into float64 acc [2, K]. */
function backwardDx(dx: Buf, dOut: Buf, w: Buf, d: Dims, overwrite: boolean): void {
  const { N, K, M } = d;
  need(dx, N * K, 'matmul dx [N, K]');
  const acc = new Float64Array(2 * K);
  const M4 = M - (M % 4);
  for (let n = 0; n < N; n += 2) {
    const two = n + 1 < N; // an odd last row runs alone (its dOut row b is never read)
    const ga = n * M;
    const gb = two ? ga + M : ga;
    acc.fill(0);
    let m = 0;
    for (; m < M4; m += 4) {
      const a0 = dOut[ga + m]!, a1 = dOut[ga + m + 1]!, a2 = dOut[ga + m + 2]!, a3 = dOut[ga + m + 3]!;
      const b0 = dOut[gb + m]!, b1 = dOut[gb + m + 1]!, b2 = dOut[gb + m + 2]!, b3 = dOut[gb + m + 3]!;
      const w0 = m * K;
      const w1 = w0 + K;
      const w2 = w1 + K;
      const w3 = w2 + K;
      for (let k = 0; k < K; k++) {
        const p0 = w[w0 + k]!;
        const p1 = w[w1 + k]!;
        const p2 = w[w2 + k]!;
        const p3 = w[w3 + k]!;
        acc[k] += a0 * p0 + a1 * p1 + a2 * p2 + a3 * p3;
        acc[K + k] += b0 * p0 + b1 * p1 + b2 * p2 + b3 * p3;
      }
    }
    for (; m < M; m++) {
      const a = dOut[ga + m]!;
      const b = dOut[gb + m]!;
      const wo = m * K;
      for (let k = 0; k < K; k++) {
        const p = w[wo + k]!;
        acc[k] += a * p;
        acc[K + k] += b * p;
      }
    }
    const xo = n * K;
    const len = two ? 2 * K : K;
    if (overwrite) for (let j = 0; j < len; j++) dx[xo + j] = acc[j]!;
    else for (let j = 0; j < len; j++) dx[xo + j] += acc[j]!;
  }
}

/** dWeight[m, k] += Σ_n dOut[n, m] · x[n, k]; rows m..m+3 into float64 acc [4, K], n in pairs. */
function backwardDWeight(dW: Buf, dOut: Buf, x: Buf, d: Dims): void {
  const { N, K, M } = d;
  need(dW, M * K, 'matmul dWeight [M, K]');
  const acc = new Float64Array(4 * K);
  const K2 = 2 * K;
  const K3 = 3 * K;
  for (let m = 0; m < M; m += 4) {
    const rows = Math.min(4, M - m);
    acc.fill(0);
    if (rows === 4) {
      let n = 0;
      for (; n + 1 < N; n += 2) {
        const ga = n * M + m;
        const gb = ga + M;
        const a0 = dOut[ga]!, a1 = dOut[ga + 1]!, a2 = dOut[ga + 2]!, a3 = dOut[ga + 3]!;
        const b0 = dOut[gb]!, b1 = dOut[gb + 1]!, b2 = dOut[gb + 2]!, b3 = dOut[gb + 3]!;
        const xa = n * K;
        const xb = xa + K;
        for (let k = 0; k < K; k++) {
          const u = x[xa + k]!;
          const v = x[xb + k]!;
          acc[k] += a0 * u + b0 * v;
          acc[K + k] += a1 * u + b1 * v;
          acc[K2 + k] += a2 * u + b2 * v;
          acc[K3 + k] += a3 * u + b3 * v;
        }
      }
      if (n < N) addOuterRows(acc, dOut, x, n, m, 4, d);
    } else {
      for (let n = 0; n < N; n++) addOuterRows(acc, dOut, x, n, m, rows, d);
    }
    const wo = m * K;
    for (let j = 0; j < rows * K; j++) dW[wo + j] += acc[j]!;
  }
}

/** acc[r, :] += dOut[n, m + r] · x[n, :] for r < rows (the tails of the blocked dWeight loop). */
function addOuterRows(acc: Float64Array, dOut: Buf, x: Buf, n: number, m: number, rows: number, d: Dims): void {
  const { K, M } = d;
  const xo = n * K;
  for (let r = 0; r < rows; r++) {
    const a = dOut[n * M + m + r]!;
    const ao = r * K;
    for (let k = 0; k < K; k++) acc[ao + k] += a * x[xo + k]!;
  }
}

/** dBias[m] += Σ_n dOut[n, m], summed in float64 acc [M]. */
function backwardDBias(dBias: Buf, dOut: Buf, d: Dims): void {
  const { N, M } = d;
  need(dBias, M, 'matmul dBias [M]');
  const acc = new Float64Array(M);
  for (let n = 0; n < N; n++) {
    const go = n * M;
    for (let m = 0; m < M; m++) acc[m] += dOut[go + m]!;
  }
  for (let m = 0; m < M; m++) dBias[m] += acc[m]!;
}
