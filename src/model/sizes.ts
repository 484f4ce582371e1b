/**
 * Sizes (in elements) of everything the model keeps, as functions of the config and the local
 * batch shape. The allocator and the planner both read these, so they cannot drift apart.
 */
import { headDim, type GPTConfig } from './config.js';

export interface RowShape {
  /** Sequences per micro-batch on this rank. */
  B: number;
  /** Tokens of each sequence held by this rank. */
  T: number;
}

/** Saved activations of one transformer block (rows N = B·T). */
export function blockActSizes(c: GPTConfig, r: RowShape): Record<string, number> {
  const N = r.B * r.T;
  const D = headDim(c);
  const fcOut = c.activation === 'swiglu' ? 2 * c.ffn : c.ffn;
  const stats = c.norm === 'layernorm' ? N : 0;
  return {
    ln1: N * c.width,
    ln1Mean: stats,
    ln1Rstd: N,
    q: N * c.heads * D,
    k: N * c.kvHeads * D,
    v: N * c.kvHeads * D,
    att: N * c.heads * D,
    lse: N * c.heads,
    x2: N * c.width,
    ln2: N * c.width,
    ln2Mean: stats,
    ln2Rstd: N,
    fc: N * fcOut,
    act: N * c.ffn,
  };
}

/** Per-step buffers outside the blocks: residual stream per layer boundary, final norm, logits. */
export function headActSizes(c: GPTConfig, r: RowShape): Record<string, number> {
  const N = r.B * r.T;
  return {
    resid: (c.layers + 1) * N * c.width,
    lnf: N * c.width,
    lnfMean: c.norm === 'layernorm' ? N : 0,
    lnfRstd: N,
    logits: N * c.vocab,
    losses: N,
    ceLse: N,
  };
}

/** Backward scratch shared by all layers. */
export function backwardScratchSizes(c: GPTConfig, r: RowShape): Record<string, number> {
  const N = r.B * r.T;
  const D = headDim(c);
  const fcOut = c.activation === 'swiglu' ? 2 * c.ffn : c.ffn;
  return {
    dResid: N * c.width,
    dX2: N * c.width,
    dNorm: N * c.width,
    dAct: N * c.ffn,
    dFc: N * fcOut,
    dAtt: N * c.heads * D,
    dq: N * c.heads * D,
    dk: N * c.kvHeads * D,
    dv: N * c.kvHeads * D,
    dLogits: N * c.vocab,
  };
}

export function sumSizes(s: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(s)) n += v;
  return n;
}

/**
 * Activation elements held at the peak of a step: all blocks' saved activations (or, with
 * activation checkpointing, one block's set recomputed on demand), the head, and the backward scratch.
 */
export function activationElements(c: GPTConfig, r: RowShape, checkpoint: boolean): number {
  const block = sumSizes(blockActSizes(c, r));
  return (checkpoint ? block : c.layers * block) + sumSizes(headActSizes(c, r)) + sumSizes(backwardScratchSizes(c, r));
}
