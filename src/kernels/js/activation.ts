/**
 * Elementwise activations. GELU uses the tanh approximation
 *   gelu(x) = ½·x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³);
 * SwiGLU splits each row x: [N, 2F] into [gate | up] and gives out: [N, F] = silu(gate)·up with
 * silu(g) = g·σ(g).
 */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/** out = gelu(x) over n values (out may alias x). */
export function geluForward(o: { out: Buf }, i: { x: Buf }, d: { n: number }): void {
  const { out } = o;
  const { x } = i;
  const { n } = d;
  dim(n, 'gelu n');
  need(x, n, 'gelu x');
  need(out, n, 'gelu out');
  for (let j = 0; j < n; j++) {
    const v = x[j]!;
    const t = Math.tanh(SQRT_2_OVER_PI * (v + GELU_A * v * v * v));
    out[j] = 0.5 * v * (1 + t);
  }
}

/** dx += dOut · gelu'(x) (overwrite: dx =),  gelu'(x) = ½(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²). */
export function geluBackward(g: { dx: Buf }, i: { dOut: Buf; x: Buf }, d: { n: number; overwrite?: boolean }): void {
  const { dx } = g;
  const { dOut, x } = i;
  const { n } = d;
  dim(n, 'geluBackward n');
  need(x, n, 'geluBackward x');
  need(dOut, n, 'geluBackward dOut');
  need(dx, n, 'geluBackward dx');
  if (d.overwrite) dx.fill(0, 0, n);
  for (let j = 0; j < n; j++) {
    const v = x[j]!;
    const v2 = v * v;
    const t = Math.tanh(SQRT_2_OVER_PI * (v + GELU_A * v2 * v));
    const du = SQRT_2_OVER_PI * (1 + 3 * GELU_A * v2);
    dx[j] += dOut[j]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du);
  }
}

/** σ(g) without overflow: exp of a non-positive argument only. */
function sigmoid(v: number): number {
  if (v >= 0) return 1 / (1 + Math.exp(-v));
  const e = Math.exp(v);
  return e / (1 + e);
}

/** x: [N, 2F] = [gate | up]; out: [N, F] = silu(gate)·up. */
export function swigluForward(o: { out: Buf }, i: { x: Buf }, d: { N: number; F: number }): void {
  const { out } = o;
  const { x } = i;
  const { N, F } = d;
  dim(N, 'swiglu N');
  dim(F, 'swiglu F');
  need(x, 2 * N * F, 'swiglu x [N, 2F]');
  need(out, N * F, 'swiglu out [N, F]');
  for (let n = 0; n < N; n++) {
    const xo = 2 * n * F;
    const oo = n * F;
    for (let f = 0; f < F; f++) {
      const gv = x[xo + f]!;
      out[oo + f] = gv * sigmoid(gv) * x[xo + F + f]!;
    }
  }
}

/** dGate += dOut·up·σ(g)·(1 + g·(1 − σ(g))),  dUp += dOut·silu(g);  dx: [N, 2F] = [dGate | dUp] (overwrite: =). */
export function swigluBackward(g: { dx: Buf }, i: { dOut: Buf; x: Buf }, d: { N: number; F: number; overwrite?: boolean }): void {
  const { dx } = g;
  const { dOut, x } = i;
  const { N, F } = d;
  dim(N, 'swigluBackward N');
  dim(F, 'swigluBackward F');
  need(x, 2 * N * F, 'swigluBackward x [N, 2F]');
  need(dx, 2 * N * F, 'swigluBackward dx [N, 2F]');
  need(dOut, N * F, 'swigluBackward dOut [N, F]');
  if (d.overwrite) dx.fill(0, 0, 2 * N * F);
  for (let n = 0; n < N; n++) {
    const xo = 2 * n * F;
    const oo = n * F;
    for (let f = 0; f < F; f++) {
      const gv = x[xo + f]!;
      const up = x[xo + F + f]!;
      const dy = dOut[oo + f]!;
      const s = sigmoid(gv);
      dx[xo + f] += dy * up * s * (1 + gv * (1 - s));
      dx[xo + F + f] += dy * gv * s;
    }
  }
}
