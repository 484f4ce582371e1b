/**
 * Optimizer and reduction helpers over flat buffers of n values. AdamW is the decoupled form
 * (Loshchilov & Hutter): the decay term lr·wd·param is applied to the parameter directly, not
 * folded into the gradient, so it never passes through the moment estimates.
 */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

/**
 * m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  m̂ = m/(1−β1^step);  v̂ = v/(1−β2^step);
 * param −= lr·(m̂/(√v̂ + eps) + weightDecay·param).  step is 1-based.
 */
export function adamwStep(
  o: { param: Buf; m: Buf; v: Buf },
  i: { grad: Buf },
  d: { n: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number },
): void {
  const { param, m, v } = o;
  const { grad } = i;
  const { n, lr, beta1, beta2, eps, weightDecay, step } = d;
  dim(n, 'adamw n');
  if (!Number.isInteger(step) || step < 1) throw new RangeError(`adamw: step is 1-based, got ${step}`);
  need(param, n, 'adamw param');
  need(m, n, 'adamw m');
  need(v, n, 'adamw v');
  need(grad, n, 'adamw grad');
  const c1 = 1 / (1 - Math.pow(beta1, step));
  const c2 = 1 / (1 - Math.pow(beta2, step));
  for (let j = 0; j < n; j++) {
    const gj = grad[j]!;
    const mj = beta1 * m[j]! + (1 - beta1) * gj;
    const vj = beta2 * v[j]! + (1 - beta2) * gj * gj;
    m[j] = mj;
    v[j] = vj;
    const p = param[j]!;
    param[j] = p - lr * ((mj * c1) / (Math.sqrt(vj * c2) + eps) + weightDecay * p);
  }
}

/** Σ x² accumulated in float64 (four partial sums). */
export function sumSquares(x: Buf): number {
  const n = x.length;
  const n4 = n - (n % 4);
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j < n4; j += 4) {
    const a = x[j]!;
    const b = x[j + 1]!;
    const c = x[j + 2]!;
    const e = x[j + 3]!;
    s0 += a * a;
    s1 += b * b;
    s2 += c * c;
    s3 += e * e;
  }
  for (; j < n; j++) s0 += x[j]! * x[j]!;
  return s0 + s1 + (s2 + s3);
}

/** x *= s. */
export function scale(x: Buf, s: number): void {
  for (let j = 0; j < x.length; j++) x[j] *= s;
}

/** y += a·x over y.length values (x must hold at least as many). */
export function axpy(y: Buf, x: Buf, a: number): void {
  need(x, y.length, 'axpy x');
  for (let j = 0; j < y.length; j++) y[j] += a * x[j]!;
}
