/** GPT configuration, validation, and the parameter list (names and shapes) derived from it. */
export type NormKind = 'layernorm' | 'rmsnorm';
export type ActKind = 'gelu' | 'swiglu';

export interface GPTConfig {
  /** V: byte-level models use 256. */
  vocab: number;
  /** C. */
  width: number;
  /** L. */
  layers: number;
  /** H query heads; head dim D = C / H. */
  heads: number;
  /** G key/value heads (GQA when G < H). */
  kvHeads: number;
  /** F: hidden width of the MLP (SwiGLU projects to 2F). */
  ffn: number;
  norm: NormKind;
  activation: ActKind;
  /** Output head shares the token embedding. */
  tiedHead: boolean;
  /** Linear layers carry biases (GPT-2 style) or not (llama style). */
  bias: boolean;
  ropeBase: number;
  normEps: number;
  /** Sliding-window attention: each token attends itself and the `window` tokens before it; absent: all before it. */
  window?: number;
}

export const DEFAULT_CONFIG: GPTConfig = {
  vocab: 256,
  width: 128,
  layers: 4,
  heads: 4,
  kvHeads: 4,
  ffn: 512,
  norm: 'layernorm',
  activation: 'gelu',
  tiedHead: false,
  bias: true,
  ropeBase: 10000,
  normEps: 1e-5,
};

/** Throws one line naming the offending values. */
export function validateConfig(c: GPTConfig): void {
  const pos = (k: keyof GPTConfig) => {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${k}=${v} must be a positive integer`);
  };
  for (const k of ['vocab', 'width', 'layers', 'heads', 'kvHeads', 'ffn'] as const) pos(k);
  if (c.width % c.heads !== 0) throw new Error(`heads=${c.heads} must divide width=${c.width}`);
  if (c.heads % c.kvHeads !== 0) throw new Error(`kv-heads=${c.kvHeads} must divide heads=${c.heads}`);
  if ((c.width / c.heads) % 2 !== 0) throw new Error(`head dim ${c.width / c.heads} (width/heads) must be even for RoPE`);
  if (c.norm !== 'layernorm' && c.norm !== 'rmsnorm') throw new Error(`norm=${c.norm} is not one of layernorm|rmsnorm`);
  if (c.activation !== 'gelu' && c.activation !== 'swiglu') throw new Error(`activation=${c.activation} is not one of gelu|swiglu`);
  if (c.window !== undefined && !(Number.isInteger(c.window) && c.window >= 1)) throw new Error(`window=${c.window} must be a positive integer`);
}

export function headDim(c: GPTConfig): number {
  return c.width / c.heads;
}

export interface ParamSpec {
  /** Tensor name in checkpoints (documented in README). */
  name: string;
  shape: number[];
  init: 'normal' | 'zeros' | 'ones' | 'residual';
  /** Whether AdamW weight decay applies (matrices yes; norms and biases no). */
  decay: boolean;
}

/**
 * All parameters in storage order. Linear weights are [out, in].
 *   wte [V, C]; per layer: ln1, attn.qkv [(H+2G)·D, C], attn.proj [C, H·D], ln2,
 *   mlp.fc [F or 2F, C], mlp.proj [C, F]; lnf; lm_head [V, C] unless tied.
 */
export function paramSpecs(c: GPTConfig): ParamSpec[] {
  const C = c.width;
  const D = headDim(c);
  const qkvOut = (c.heads + 2 * c.kvHeads) * D;
  const fcOut = c.activation === 'swiglu' ? 2 * c.ffn : c.ffn;
  const specs: ParamSpec[] = [{ name: 'wte', shape: [c.vocab, C], init: 'normal', decay: true }];
  const norm = (p: string) => {
    specs.push({ name: `${p}.weight`, shape: [C], init: 'ones', decay: false });
    if (c.norm === 'layernorm') specs.push({ name: `${p}.bias`, shape: [C], init: 'zeros', decay: false });
  };
  const linear = (p: string, out: number, inp: number, init: ParamSpec['init']) => {
    specs.push({ name: `${p}.weight`, shape: [out, inp], init, decay: true });
    if (c.bias) specs.push({ name: `${p}.bias`, shape: [out], init: 'zeros', decay: false });
  };
  for (let l = 0; l < c.layers; l++) {
    norm(`h.${l}.ln1`);
    linear(`h.${l}.attn.qkv`, qkvOut, C, 'normal');
    linear(`h.${l}.attn.proj`, C, c.heads * D, 'residual');
    norm(`h.${l}.ln2`);
    linear(`h.${l}.mlp.fc`, fcOut, C, 'normal');
    linear(`h.${l}.mlp.proj`, C, c.ffn, 'residual');
  }
  norm('lnf');
  if (!c.tiedHead) specs.push({ name: 'lm_head.weight', shape: [c.vocab, C], init: 'normal', decay: true });
  return specs;
}

export function paramCount(c: GPTConfig): number {
  let n = 0;
  for (const s of paramSpecs(c)) n += s.shape.reduce((a, b) => a * b, 1);
  return n;
}
