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
export type BlockScratch = Record<'dX2' | 'dNorm' | 'dAct' | 'dFc' | 'dAtt' | 'dq' | 'dk' | 'dv' | 'dqkv' | 'qkv', Buf>;

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

function linear(c: BlockCtx, out: Buf, x: Buf, p: string, N: number, K: number, M: number): void {
  const weight = c.store.view(c.params, `${p}.weight`);
  const bias = c.store.maybeView(c.params, `${p}.bias`);
  c.k.matmulForward({ out }, { x, weight, bias }, { N, K, M });
}

function linearBack(c: BlockCtx, dx: Buf | null, dOut: Buf, x: Buf, p: string, N: number, K: number, M: number): void {
  const weight = c.store.view(c.params, `${p}.weight`);
  const dWeight = c.store.view(c.grads, `${p}.weight`);
  const dBias = c.store.maybeView(c.grads, `${p}.bias`);
  c.k.matmulBackward({ dx, dWeight, dBias }, { dOut, x, weight }, { N, K, M });
}

function activation(c: BlockCtx, out: Buf, x: Buf, N: number): void {
  const F = c.cfg.ffn;
  if (c.cfg.activation === 'gelu') c.k.geluForward({ out }, { x }, { n: N * F });
  else c.k.swigluForward({ out }, { x }, { N, F });
}

/** Row count and widths of one block: N = B·T rows, qkv rows [q (H·D) | k (G·D) | v (G·D)]. */
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
    qkvW: HD + 2 * GD,
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
  const { N, C, HD, GD, qkvW, fcOut, rope } = sizesOf(c);

  norm(c, a.ln1, a.ln1Mean, a.ln1Rstd, x, `h.${l}.ln1`, N);
  linear(c, s.qkv, a.ln1, `h.${l}.attn.qkv`, N, C, qkvW);
  // [N, (H+2G)·D] -split-> q [B, T, H, D], k, v [B, T, G, D]
  for (let n = 0; n < N; n++) {
    const r = n * qkvW;
    a.q.set(s.qkv.subarray(r, r + HD), n * HD);
    a.k.set(s.qkv.subarray(r + HD, r + HD + GD), n * GD);
    a.v.set(s.qkv.subarray(r + HD + GD, r + qkvW), n * GD);
  }
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
  const { N, C, HD, GD, qkvW, fcOut, rope } = sizesOf(c);
  const F = cfg.ffn;

  // MLP branch: y = x2 + proj(act(fc(ln2(x2))))
  s.dX2.set(dY);
  s.dAct.fill(0);
  linearBack(c, s.dAct, dY, a.act, `h.${l}.mlp.proj`, N, F, C);
  s.dFc.fill(0);
  if (cfg.activation === 'gelu') k.geluBackward({ dx: s.dFc }, { dOut: s.dAct, x: a.fc }, { n: N * F });
  else k.swigluBackward({ dx: s.dFc }, { dOut: s.dAct, x: a.fc }, { N, F });
  s.dNorm.fill(0);
  linearBack(c, s.dNorm, s.dFc, a.ln2, `h.${l}.mlp.fc`, N, C, fcOut);
  normBack(c, s.dX2, s.dNorm, a.x2, a.ln2Mean, a.ln2Rstd, `h.${l}.ln2`, N);

  // Attention branch: x2 = x + proj(attn(...))
  s.dAtt.fill(0);
  linearBack(c, s.dAtt, s.dX2, a.att, `h.${l}.attn.proj`, N, HD, C);
  s.dq.fill(0);
  s.dk.fill(0);
  s.dv.fill(0);
  await c.attn.backward({ dq: s.dq, dk: s.dk, dv: s.dv }, { dOut: s.dAtt, q: a.q, k: a.k, v: a.v, out: a.att, lse: a.lse, saved }, dims);
  // Undo RoPE on dq, dk while packing into dqkv [N, (H+2G)·D]; reuse dAtt / dNorm-sized scratch.
  const dqPre = s.dAtt;
  dqPre.fill(0);
  k.ropeBackward({ dx: dqPre }, { dOut: s.dq, pos: c.pos }, rope);
  const dkPre = s.dq.subarray(0, N * GD);
  dkPre.fill(0);
  k.ropeBackward({ dx: dkPre }, { dOut: s.dk, pos: c.pos }, { ...rope, H: cfg.kvHeads });
  for (let n = 0; n < N; n++) {
    const r = n * qkvW;
    s.dqkv.set(dqPre.subarray(n * HD, (n + 1) * HD), r);
    s.dqkv.set(dkPre.subarray(n * GD, (n + 1) * GD), r + HD);
    s.dqkv.set(s.dv.subarray(n * GD, (n + 1) * GD), r + HD + GD);
  }
  s.dNorm.fill(0);
  linearBack(c, s.dNorm, s.dqkv, a.ln1, `h.${l}.attn.qkv`, N, C, qkvW);
  dY.set(s.dX2);
  normBack(c, dY, s.dNorm, x, a.ln1Mean, a.ln1Rstd, `h.${l}.ln1`, N);
}
