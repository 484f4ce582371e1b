/**
 * One pre-norm transformer block with explicit forward and backward (llm.c style):
 *   x2 = x + proj(attn(rope(q), rope(k), v)),  q,k,v = qkv(norm1(x))
 *   x3 = x2 + mlpProj(act(fc(norm2(x2))))
 * Attention goes through the injected AttentionOp, so the same block runs single-device or under
 * any sequence-parallel scheme. Rows N = B·T local tokens.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { AttentionOp, AttnDims } from '../parallel/types.js';
import { headDim, type GPTConfig } from './config.js';
import type { ParamStore } from './params.js';

export type BlockActs = Record<
  'ln1' | 'ln1Mean' | 'ln1Rstd' | 'q' | 'k' | 'v' | 'att' | 'lse' | 'x2' | 'ln2' | 'ln2Mean' | 'ln2Rstd' | 'fc' | 'act',
  Buf
>;
export type BlockScratch = Record<'dX2' | 'dNorm' | 'dAct' | 'dFc' | 'dAtt' | 'dq' | 'dk' | 'dv', Buf>;

export interface BlockCtx {
  cfg: GPTConfig;
  k: Kernels;
  store: ParamStore;
  params: Buf;
  grads: Buf;
  attn: AttentionOp;
  /** Global positions of the local tokens [T] (RoPE and masks). */
  pos: Int32Array;
  dims: AttnDims;
}

function norm(c: BlockCtx, out: Buf, mean: Buf, rstd: Buf, x: Buf, p: string, N: number): void {
  const C = c.cfg.width;
  const w = c.store.view(c.params, `${p}.weight`);
  if (c.cfg.norm === 'layernorm') {
    c.k.layerNormForward({ out, mean, rstd }, { x, weight: w, bias: c.store.view(c.params, `${p}.bias`) }, { N, C, eps: c.cfg.normEps });
  } else {
    c.k.rmsNormForward({ out, rstd }, { x, weight: w }, { N, C, eps: c.cfg.normEps });
  }
}

function normBack(c: BlockCtx, dx: Buf, dOut: Buf, x: Buf, mean: Buf, rstd: Buf, p: string, N: number): void {
  const C = c.cfg.width;
  const w = c.store.view(c.params, `${p}.weight`);
  const dW = c.store.view(c.grads, `${p}.weight`);
  if (c.cfg.norm === 'layernorm') {
    const dB = c.store.view(c.grads, `${p}.bias`);
    c.k.layerNormBackward({ dx, dWeight: dW, dBias: dB }, { dOut, x, weight: w, mean, rstd }, { N, C });
  } else {
    c.k.rmsNormBackward({ dx, dWeight: dW }, { dOut, x, weight: w, rstd }, { N, C });
  }
}

/**
 * out [N, M] = x [N, K] · W[m0 .. m0 + M)ᵀ (+ bias): output features m0 .. m0 + M of linear `p`
 * (weight [M_all, K] row-major, so a feature range is a contiguous block of rows). m0 = 0 and M =
 * all features is the whole layer.
 */
function linear(c: BlockCtx, out: Buf, x: Buf, p: string, N: number, K: number, M: number, m0 = 0): void {
  const weight = c.store.view(c.params, `${p}.weight`).subarray(m0 * K, (m0 + M) * K);
  const bias = c.store.maybeView(c.params, `${p}.bias`)?.subarray(m0, m0 + M);
  c.k.matmulForward({ out }, { x, weight, bias }, { N, K, M });
}

/**
 * Backward of linear(…, m0): dx += dOut · W[m0 ..] (overwrite: dx =, so a fresh dx needs no
 * zeroing), and that row block of dW (and db) accumulates.
 */
function linearBack(c: BlockCtx, dx: Buf | null, dOut: Buf, x: Buf, p: string, N: number, K: number, M: number, m0 = 0, overwrite = false): void {
  const weight = c.store.view(c.params, `${p}.weight`).subarray(m0 * K, (m0 + M) * K);
  const dWeight = c.store.view(c.grads, `${p}.weight`).subarray(m0 * K, (m0 + M) * K);
  const dBias = c.store.maybeView(c.grads, `${p}.bias`)?.subarray(m0, m0 + M);
  c.k.matmulBackward({ dx, dWeight, dBias }, { dOut, x, weight }, { N, K, M, overwrite });
}

function activation(c: BlockCtx, out: Buf, x: Buf, N: number): void {
  const F = c.cfg.ffn;
  if (c.cfg.activation === 'gelu') c.k.geluForward({ out }, { x }, { n: N * F });
  else c.k.swigluForward({ out }, { x }, { N, F });
}

/** Row count and widths of one block: N = B·T rows; the qkv weight's rows are [q (H·D) | k (G·D) | v (G·D)]. */
function sizesOf(c: BlockCtx) {
  const { cfg, dims } = c;
  const D = headDim(cfg);
  const HD = cfg.heads * D;
  const GD = cfg.kvHeads * D;
  return {
    N: dims.B * dims.T,
    C: cfg.width,
    HD,
    GD,
    fcOut: cfg.activation === 'swiglu' ? 2 * cfg.ffn : cfg.ffn,
    rope: { B: dims.B, T: dims.T, H: cfg.heads, D, base: cfg.ropeBase },
  };
}

/**
 * x: [N, C] block input; y: [N, C] block output. Fills `a` with what backward needs; `saved`: the
 * attention op's saved slot for this layer (AttentionOp.savedElements), when it has one.
 */
export async function blockForward(c: BlockCtx, l: number, a: BlockActs, s: BlockScratch, x: Buf, y: Buf, saved?: Buf): Promise<void> {
  const { cfg, k, dims } = c;
  const { N, C, HD, GD, fcOut, rope } = sizesOf(c);

  norm(c, a.ln1, a.ln1Mean, a.ln1Rstd, x, `h.${l}.ln1`, N);
  // The qkv projection [N, C] -> [N, (H+2G)·D] as three products on its weight's row blocks, so
  // q [B, T, H, D] and k, v [B, T, G, D] come out in their own buffers (no per-row split pass).
  const qkvP = `h.${l}.attn.qkv`;
  linear(c, a.q, a.ln1, qkvP, N, C, HD, 0);
  linear(c, a.k, a.ln1, qkvP, N, C, GD, HD);
  linear(c, a.v, a.ln1, qkvP, N, C, GD, HD + GD);
  k.ropeForward({ out: a.q }, { x: a.q, pos: c.pos }, rope);
  k.ropeForward({ out: a.k }, { x: a.k, pos: c.pos }, { ...rope, H: cfg.kvHeads });
  a.att.fill(0);
  a.lse.fill(-Infinity);
  await c.attn.forward({ out: a.att, lse: a.lse, saved }, { q: a.q, k: a.k, v: a.v }, dims);
  linear(c, a.x2, a.att, `h.${l}.attn.proj`, N, HD, C);
  k.axpy(a.x2, x, 1);

  norm(c, a.ln2, a.ln2Mean, a.ln2Rstd, a.x2, `h.${l}.ln2`, N);
  linear(c, a.fc, a.ln2, `h.${l}.mlp.fc`, N, C, fcOut);
  activation(c, a.act, a.fc, N);
  linear(c, y, a.act, `h.${l}.mlp.proj`, N, cfg.ffn, C);
  k.axpy(y, a.x2, 1);
}

/**
 * dY: [N, C] gradient of the block output, overwritten with the gradient of the block input x.
 * Parameter gradients accumulate into c.grads.
 */
export async function blockBackward(c: BlockCtx, l: number, a: BlockActs, s: BlockScratch, x: Buf, dY: Buf, saved?: Buf): Promise<void> {
  const { cfg, k, dims } = c;
  const { N, C, HD, GD, fcOut, rope } = sizesOf(c);
  const F = cfg.ffn;

  // MLP branch: y = x2 + proj(act(fc(ln2(x2)))). The first write into each scratch gradient
  // overwrites it (dAct, dFc, dNorm, dAtt, dqPre, dkPre): no zeroing pass.
  s.dX2.set(dY);
  linearBack(c, s.dAct, dY, a.act, `h.${l}.mlp.proj`, N, F, C, 0, true);
  if (cfg.activation === 'gelu') k.geluBackward({ dx: s.dFc }, { dOut: s.dAct, x: a.fc }, { n: N * F, overwrite: true });
  else k.swigluBackward({ dx: s.dFc }, { dOut: s.dAct, x: a.fc }, { N, F, overwrite: true });
  linearBack(c, s.dNorm, s.dFc, a.ln2, `h.${l}.mlp.fc`, N, C, fcOut, 0, true);
  normBack(c, s.dX2, s.dNorm, a.x2, a.ln2Mean, a.ln2Rstd, `h.${l}.ln2`, N);

  // Attention branch: x2 = x + proj(attn(...))
  linearBack(c, s.dAtt, s.dX2, a.att, `h.${l}.attn.proj`, N, HD, C, 0, true);
  s.dq.fill(0);
  s.dk.fill(0);
  s.dv.fill(0);
  await c.attn.backward({ dq: s.dq, dk: s.dk, dv: s.dv }, { dOut: s.dAtt, q: a.q, k: a.k, v: a.v, out: a.att, lse: a.lse, saved }, dims);
  // Undo RoPE on dq, dk (into dAtt- and dq-sized scratch), then the qkv projection's backward on
  // its three row blocks: dx sums the three, each block of dW gets its own.
  const dqPre = s.dAtt;
  k.ropeBackward({ dx: dqPre }, { dOut: s.dq, pos: c.pos }, { ...rope, overwrite: true });
  const dkPre = s.dq.subarray(0, N * GD);
  k.ropeBackward({ dx: dkPre }, { dOut: s.dk, pos: c.pos }, { ...rope, H: cfg.kvHeads, overwrite: true });
  const qkvP = `h.${l}.attn.qkv`;
  linearBack(c, s.dNorm, dqPre, a.ln1, qkvP, N, C, HD, 0, true);
  linearBack(c, s.dNorm, dkPre, a.ln1, qkvP, N, C, GD, HD);
  linearBack(c, s.dNorm, s.dv, a.ln1, qkvP, N, C, GD, HD + GD);
  dY.set(s.dX2);
  normBack(c, dY, s.dNorm, x, a.ln1Mean, a.ln1Rstd, `h.${l}.ln1`, N);
}
