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

/**
 * AdamW over the flat parameters [lo, hi) (default all of them): m and v hold that range only, and
 * update() takes its gradients as a buffer of the same range (train/zero.ts gives each rank a
 * chunk). Elements of the range past the last parameter (flat padding) are left alone.
 */
export class AdamW {
  readonly m: Buf;
  readonly v: Buf;
  readonly lo: number;
  readonly hi: number;
  /** Number of updates applied so far (bias correction uses step + 1). */
  step = 0;

  constructor(private store: ParamStore, arena: Arena, readonly hp: AdamWHyper, like: Buf, range?: { lo: number; hi: number }) {
    const dtype = like instanceof Float64Array ? 'float64' : 'float32';
    this.lo = range?.lo ?? 0;
    this.hi = range?.hi ?? store.size;
    if (!(this.lo >= 0 && this.hi >= this.lo)) throw new RangeError(`AdamW: bad range [${this.lo}, ${this.hi})`);
    this.m = arena.alloc('optimizer', this.hi - this.lo, dtype);
    this.v = arena.alloc('optimizer', this.hi - this.lo, dtype);
  }

  /** params: the whole flat buffer; grads: [hi − lo], the range's gradients. */
  update(k: Kernels, params: Buf, grads: Buf, lr: number): void {
    this.step++;
    const { lo, hi } = this;
    for (const e of this.store.entries) {
      const a = Math.max(lo, e.offset);
      const b = Math.min(hi, e.offset + e.size);
      if (a >= b) continue;
      const r = (x: Buf) => x.subarray(a - lo, b - lo);
      k.adamwStep(
        { param: params.subarray(a, b), m: r(this.m), v: r(this.v) },
        { grad: r(grads) },
        { n: b - a, lr, beta1: this.hp.beta1, beta2: this.hp.beta2, eps: this.hp.eps, weightDecay: e.decay ? this.hp.weightDecay : 0, step: this.step },
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
  clipToNorm(k, grads, norm, maxNorm);
  return norm;
}

/** The scaling of clipGradNorm for gradients (or a shard of them) whose global norm is `norm`. */
export function clipToNorm(k: Kernels, grads: Buf, norm: number, maxNorm: number): void {
  if (maxNorm > 0 && norm > maxNorm) k.scale(grads, maxNorm / (norm + 1e-6));
}
