/**
 * The kernel interface every backend implements (js reference, native SIMD). DESIGN.md §4 style:
 * outputs, then inputs, then dimensions. Forward overwrites its outputs unless noted; backward
 * ACCUMULATES (+=) into its gradients, and the caller zeroes them. The input gradient (dx) of
 * matmul, GELU, SwiGLU and RoPE may instead be written (=) with `overwrite: true` in the dims: the
 * model's backward then skips zeroing a fresh buffer and the kernel skips reading it (about 200 MB
 * of memory traffic per N=4096 step of the reference model). Kernels are synchronous, hold no
 * global state and do not allocate inside their hot loops.
 *
 * Attention is one block primitive: a query block against a key/value block, each with the global
 * positions of its tokens, folded into a running (out, lse) with the online-softmax merge rule
 * (algorithms.md §0.3, §10). Every sequence-parallel scheme is built from it.
 */
import type { Buf } from '../tensor/dtype.js';

/**
 * Which (query, key) pairs may attend, judged on GLOBAL positions qp, kp:
 *   allowed = kp >= 0 && qp >= 0
 *          && (!causal || kp <= qp)
 *          && (windowLeft  === undefined || kp >= qp - windowLeft)
 *          && (windowRight === undefined || kp <= qp + windowRight)
 * A negative position marks padding: a padded key is never attended; a padded query row gets
 * out = 0, lse = -inf and contributes no gradient.
 */
export interface AttnMask {
  causal: boolean;
  windowLeft?: number;
  windowRight?: number;
}

/** q: [B, Tq, H, D]; k, v: [B, Tk, G, D]; out: [B, Tq, H, D]; lse: [B, Tq, H]. H % G == 0. */
export interface AttnBlockDims {
  B: number;
  Tq: number;
  Tk: number;
  H: number;
  G: number;
  D: number;
  /** Usually 1/sqrt(D). */
  scale: number;
  mask: AttnMask;
  /**
   * Only query heads [from, to) are computed; the other heads of out, lse (forward) and dq
   * (backward) are left as they are, and dk, dv of a kv group take only those heads' terms (a
   * group with none of them is left as it is). Default: all H. Lets ranks that share one
   * [B, T, H, D] tensor each compute their own heads of it (Ulysses' shared path); a range that
   * splits a kv group's heads leaves partial dk, dv sums for the caller to add up.
   */
  heads?: { from: number; to: number };
}

export interface RowDims {
  B: number;
  T: number;
  H: number;
  D: number;
}

export interface Kernels {
  readonly name: 'js' | 'native';

  /** out[N, M] = x[N, K] · weight[M, K]ᵀ (+ bias[M]). Weight is stored [out, in]. */
  matmulForward(o: { out: Buf }, i: { x: Buf; weight: Buf; bias?: Buf | null }, d: { N: number; K: number; M: number }): void;
  /**
   * dx[N,K] += dOut·W (overwrite: dx = dOut·W); dWeight[M,K] += dOutᵀ·x; dBias[M] += Σ_n dOut. Any
   * gradient may be omitted.
   */
  matmulBackward(
    g: { dx?: Buf | null; dWeight?: Buf | null; dBias?: Buf | null },
    i: { dOut: Buf; x: Buf; weight: Buf },
    d: { N: number; K: number; M: number; overwrite?: boolean },
  ): void;

  /** x, out: [N, C]; mean, rstd: [N]. */
  layerNormForward(o: { out: Buf; mean: Buf; rstd: Buf }, i: { x: Buf; weight: Buf; bias: Buf }, d: { N: number; C: number; eps: number }): void;
  layerNormBackward(
    g: { dx: Buf; dWeight: Buf; dBias: Buf },
    i: { dOut: Buf; x: Buf; weight: Buf; mean: Buf; rstd: Buf },
    d: { N: number; C: number },
  ): void;
  /** out = x · rstd · weight, rstd = 1/sqrt(mean(x²) + eps). x, out: [N, C]; rstd: [N]. */
  rmsNormForward(o: { out: Buf; rstd: Buf }, i: { x: Buf; weight: Buf }, d: { N: number; C: number; eps: number }): void;
  rmsNormBackward(g: { dx: Buf; dWeight: Buf }, i: { dOut: Buf; x: Buf; weight: Buf; rstd: Buf }, d: { N: number; C: number }): void;

  /** GELU, tanh approximation, elementwise over n values. */
  geluForward(o: { out: Buf }, i: { x: Buf }, d: { n: number }): void;
  /** dx += dOut · gelu'(x) (overwrite: dx =). */
  geluBackward(g: { dx: Buf }, i: { dOut: Buf; x: Buf }, d: { n: number; overwrite?: boolean }): void;
  /** x: [N, 2F] = [gate | up]; out: [N, F] = silu(gate) * up. */
  swigluForward(o: { out: Buf }, i: { x: Buf }, d: { N: number; F: number }): void;
  /** dx: [N, 2F] += the gradient of [gate | up] (overwrite: dx =). */
  swigluBackward(g: { dx: Buf }, i: { dOut: Buf; x: Buf }, d: { N: number; F: number; overwrite?: boolean }): void;

  /** out[n, :] = weight[tokens[n], :]. tokens: [N]; weight: [V, C]; out: [N, C]. */
  embeddingForward(o: { out: Buf }, i: { tokens: Int32Array; weight: Buf }, d: { N: number; C: number }): void;
  embeddingBackward(g: { dWeight: Buf }, i: { dOut: Buf; tokens: Int32Array }, d: { N: number; C: number }): void;

  /**
   * Rotary embedding, half-split pairs (j, j + D/2), angle pos[t] · base^(-2j/D).
   * x, out: [B, T, H, D] (out may alias x); pos: [T] GLOBAL positions of the local tokens.
   */
  ropeForward(o: { out: Buf }, i: { x: Buf; pos: Int32Array }, d: { B: number; T: number; H: number; D: number; base: number }): void;
  /** dx += Rᵀ dOut (overwrite: dx =; dx must not alias dOut). */
  ropeBackward(
    g: { dx: Buf },
    i: { dOut: Buf; pos: Int32Array },
    d: { B: number; T: number; H: number; D: number; base: number; overwrite?: boolean },
  ): void;

  /**
   * Fused softmax cross-entropy. logits: [N, V]; targets: [N]; losses, lse: [N].
   * losses[n] = lse[n] - logits[n, targets[n]], or 0 where targets[n] == ignoreIndex.
   * Returns the number of counted (non-ignored) rows.
   */
  crossEntropyForward(o: { losses: Buf; lse: Buf }, i: { logits: Buf; targets: Int32Array }, d: { N: number; V: number; ignoreIndex: number }): number;
  /** dLogits[n] += scale · (softmax(logits[n]) − onehot(targets[n])) on counted rows. */
  crossEntropyBackward(
    g: { dLogits: Buf },
    i: { logits: Buf; lse: Buf; targets: Int32Array },
    d: { N: number; V: number; ignoreIndex: number; scale: number },
  ): void;

  /** Decoupled AdamW on n values; step is 1-based (bias correction). */
  adamwStep(
    o: { param: Buf; m: Buf; v: Buf },
    i: { grad: Buf },
    d: { n: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number },
  ): void;
  /** Σ x² in float64 accumulation. */
  sumSquares(x: Buf): number;
  /** x *= s. */
  scale(x: Buf, s: number): void;
  /** y += a · x. */
  axpy(y: Buf, x: Buf, a: number): void;

  /**
   * Attention block forward: folds keys/values k, v (positions kPos [Tk]) into the running state
   * (out, lse) of queries q (positions qPos [Tq]). Start a row with out = 0, lse = -inf. Rows with
   * no allowed key in this block are left unchanged; rows with none at all end as out = 0, lse = -inf.
   */
  attnForward(
    o: { out: Buf; lse: Buf },
    i: { q: Buf; k: Buf; v: Buf; qPos: Int32Array; kPos: Int32Array },
    d: AttnBlockDims,
  ): void;
  /**
   * Attention block backward from the FINAL out and lse (merged over all key blocks) and
   * delta = rowsum(dOut ∘ out) [B, Tq, H]. Accumulates dq [B,Tq,H,D], dk, dv [B,Tk,G,D].
   */
  attnBackward(
    g: { dq: Buf; dk: Buf; dv: Buf },
    i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf; delta: Buf; qPos: Int32Array; kPos: Int32Array },
    d: AttnBlockDims,
  ): void;
  /** delta[b,t,h] = Σ_d dOut · out. */
  attnDelta(o: { delta: Buf }, i: { dOut: Buf; out: Buf }, d: RowDims): void;
  /** Merge a partial result (out2, lse2) into (out, lse) — algorithms.md §0.3, −inf safe. */
  attnMerge(o: { out: Buf; lse: Buf }, i: { out2: Buf; lse2: Buf }, d: RowDims): void;
}
