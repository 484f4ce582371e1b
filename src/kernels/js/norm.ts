/**
 * LayerNorm and RMSNorm over the last dim. x, out: [N, C] (N = local tokens); mean, rstd: [N];
 * weight, bias: [C]. Row statistics are computed in float64 (two passes for the variance, so a
 * large mean does not cancel the variance away); backward reuses the saved mean and rstd.
 * dWeight and dBias are summed over rows in a float64 accumulator [C] (or [2, C]) allocated once
 * per call, then added to the caller's buffers (+=).
 */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

function checkRows(N: number, C: number, what: string, bufs: Record<string, [Buf, number]>): void {
  dim(N, `${what} N`);
  dim(C, `${what} C`);
  for (const [name, [b, n]] of Object.entries(bufs)) need(b, n, `${what} ${name}`);
}

/** out = (x − mean)·rstd·weight + bias, rstd = 1/sqrt(var(x) + eps) (biased variance). */
export function layerNormForward(
  o: { out: Buf; mean: Buf; rstd: Buf },
  i: { x: Buf; weight: Buf; bias: Buf },
  d: { N: number; C: number; eps: number },
): void {
  const { out, mean, rstd } = o;
  const { x, weight, bias } = i;
  const { N, C, eps } = d;
  checkRows(N, C, 'layerNorm', { 'x [N, C]': [x, N * C], 'out [N, C]': [out, N * C], 'mean [N]': [mean, N], 'rstd [N]': [rstd, N], 'weight [C]': [weight, C], 'bias [C]': [bias, C] });
  for (let n = 0; n < N; n++) {
    const xo = n * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += x[xo + c]!;
    const mu = s / C;
    let v = 0;
    for (let c = 0; c < C; c++) {
      const t = x[xo + c]! - mu;
      v += t * t;
    }
    const r = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) out[xo + c] = (x[xo + c]! - mu) * r * weight[c]! + bias[c]!;
    // saved as computed; backward reads them back (rounded to the buffer's dtype)
    mean[n] = mu;
    rstd[n] = r;
  }
}

/**
 * With x̂ = (x − mean)·rstd and g = dOut·weight:
 *   dx += rstd·(g − mean(g) − x̂·mean(g·x̂)),  dWeight += Σ_n dOut·x̂,  dBias += Σ_n dOut.
 */
export function layerNormBackward(
  g: { dx: Buf; dWeight: Buf; dBias: Buf },
  i: { dOut: Buf; x: Buf; weight: Buf; mean: Buf; rstd: Buf },
  d: { N: number; C: number },
): void {
  const { dx, dWeight, dBias } = g;
  const { dOut, x, weight, mean, rstd } = i;
  const { N, C } = d;
  checkRows(N, C, 'layerNormBackward', {
    'dx [N, C]': [dx, N * C], 'dOut [N, C]': [dOut, N * C], 'x [N, C]': [x, N * C], 'mean [N]': [mean, N], 'rstd [N]': [rstd, N],
    'weight [C]': [weight, C], 'dWeight [C]': [dWeight, C], 'dBias [C]': [dBias, C],
  });
  const acc = new Float64Array(2 * C); // [dWeight | dBias] partial sums
  for (let n = 0; n < N; n++) {
    const xo = n * C;
    const mu = mean[n]!;
    const r = rstd[n]!;
    let sg = 0; // Σ g
    let sgx = 0; // Σ g·x̂
    for (let c = 0; c < C; c++) {
      const dy = dOut[xo + c]!;
      const xh = (x[xo + c]! - mu) * r;
      const gc = dy * weight[c]!;
      sg += gc;
      sgx += gc * xh;
      acc[c] += dy * xh;
      acc[C + c] += dy;
    }
    const mg = sg / C;
    const mgx = sgx / C;
    for (let c = 0; c < C; c++) {
      const xh = (x[xo + c]! - mu) * r;
      dx[xo + c] += r * (dOut[xo + c]! * weight[c]! - mg - xh * mgx);
    }
  }
  for (let c = 0; c < C; c++) {
    dWeight[c] += acc[c]!;
    dBias[c] += acc[C + c]!;
  }
}

/** out = x·rstd·weight, rstd = 1/sqrt(mean(x²) + eps). */
export function rmsNormForward(o: { out: Buf; rstd: Buf }, i: { x: Buf; weight: Buf }, d: { N: number; C: number; eps: number }): void {
  const { out, rstd } = o;
  const { x, weight } = i;
  const { N, C, eps } = d;
  checkRows(N, C, 'rmsNorm', { 'x [N, C]': [x, N * C], 'out [N, C]': [out, N * C], 'rstd [N]': [rstd, N], 'weight [C]': [weight, C] });
  for (let n = 0; n < N; n++) {
    const xo = n * C;
    let s = 0;
    for (let c = 0; c < C; c++) {
      const t = x[xo + c]!;
      s += t * t;
    }
    const r = 1 / Math.sqrt(s / C + eps);
    for (let c = 0; c < C; c++) out[xo + c] = x[xo + c]! * r * weight[c]!;
    rstd[n] = r;
  }
}

/** With x̂ = x·rstd and g = dOut·weight: dx += rstd·(g − x̂·mean(g·x̂)), dWeight += Σ_n dOut·x̂. */
export function rmsNormBackward(g: { dx: Buf; dWeight: Buf }, i: { dOut: Buf; x: Buf; weight: Buf; rstd: Buf }, d: { N: number; C: number }): void {
  const { dx, dWeight } = g;
  const { dOut, x, weight, rstd } = i;
  const { N, C } = d;
  checkRows(N, C, 'rmsNormBackward', {
    'dx [N, C]': [dx, N * C], 'dOut [N, C]': [dOut, N * C], 'x [N, C]': [x, N * C], 'rstd [N]': [rstd, N],
    'weight [C]': [weight, C], 'dWeight [C]': [dWeight, C],
  });
  const acc = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const xo = n * C;
    const r = rstd[n]!;
    let sgx = 0;
    for (let c = 0; c < C; c++) {
      const dy = dOut[xo + c]!;
      const xh = x[xo + c]! * r;
      sgx += dy * weight[c]! * xh;
      acc[c] += dy * xh;
    }
    const mgx = sgx / C;
    for (let c = 0; c < C; c++) {
      dx[xo + c] += r * (dOut[xo + c]! * weight[c]! - x[xo + c]! * r * mgx);
    }
  }
  for (let c = 0; c < C; c++) dWeight[c] += acc[c]!;
}
