/** AdamW over the flat parameter buffer (no decay on norms and biases), LR schedule, clipping. */
import type { Buf } from '../tensor/dtype.js';
import type { Arena } from '../tensor/arena.js';
import type { Kernels } from '../kernels/types.js';
import type { ParamStore } from '../model/params.js';

export interface AdamWHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class AdamW {
  readonly m: Buf;
  readonly v: Buf;
  /** Number of updates applied so far (bias correction uses step + 1). */
  step = 0;

  constructor(private store: ParamStore, arena: Arena, readonly hp: AdamWHyper, like: Buf) {
    const dtype = like instanceof Float64Array ? 'float64' : 'float32';
    this.m = arena.alloc('optimizer', store.size, dtype);
    this.v = arena.alloc('optimizer', store.size, dtype);
  }

  update(k: Kernels, params: Buf, grads: Buf, lr: number): void {
    this.step++;
    for (const e of this.store.entries) {
      const r = (b: Buf) => b.subarray(e.offset, e.offset + e.size);
      k.adamwStep(
        { param: r(params), m: r(this.m), v: r(this.v) },
        { grad: r(grads) },
        { n: e.size, lr, beta1: this.hp.beta1, beta2: this.hp.beta2, eps: this.hp.eps, weightDecay: e.decay ? this.hp.weightDecay : 0, step: this.step },
      );
    }
  }
}

/** Linear warmup to `lr`, then cosine decay to minLrFrac·lr at `total` steps. `step` is 0-based. */
export function lrAt(step: number, o: { lr: number; warmup: number; total: number; minLrFrac: number }): number {
  if (o.warmup > 0 && step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const span = Math.max(1, o.total - o.warmup);
  const t = Math.min(1, Math.max(0, (step - o.warmup) / span));
  const min = o.lr * o.minLrFrac;
  return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * t));
}

/** Scales grads so their global L2 norm is at most maxNorm (0 = off). Returns the norm before clipping. */
export function clipGradNorm(k: Kernels, grads: Buf, maxNorm: number): number {
  const norm = Math.sqrt(k.sumSquares(grads));
  if (maxNorm > 0 && norm > maxNorm) k.scale(grads, maxNorm / (norm + 1e-6));
  return norm;
}
