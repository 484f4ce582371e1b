/**
 * GPT language model over local token shards: embedding → L blocks → final norm → head → fused
 * cross-entropy. Buffers are sized once for a local batch shape (B sequences × T tokens) and
 * reused every step. The attention op, the global positions of the local tokens and the global
 * sequence length are given per call, so the model knows nothing about how a sequence is split.
 */
import type { Buf, DType } from '../tensor/dtype.js';
import type { Arena } from '../tensor/arena.js';
import type { Kernels } from '../kernels/types.js';
import type { AttentionOp, AttnDims } from '../parallel/types.js';
import { headDim, validateConfig, type GPTConfig } from './config.js';
import { ParamStore } from './params.js';
import { blockActSizes, headActSizes, backwardScratchSizes, type RowShape } from './sizes.js';
import { blockBackward, blockForward, type BlockActs, type BlockCtx, type BlockScratch } from './block.js';

export interface GPTOptions {
  config: GPTConfig;
  kernels: Kernels;
  arena: Arena;
  dtype: DType;
  rows: RowShape;
  /** Activation checkpointing: keep only block inputs, recompute each block in backward. */
  checkpoint?: boolean;
  /**
   * params and grads are allocated rounded up to a multiple of this many elements (default 1), so
   * that W equal chunks cover them (train/zero.ts: reduce-scatter and all-gather over W ranks). The
   * elements past store.size belong to no parameter and stay zero.
   */
  flatMultiple?: number;
  /**
   * Memory for the tensors the attention op reads and writes (q, k|v, att, lse of every layer; the
   * dAtt, dq, dk, dv scratch): the op's AttentionOp.ioAlloc when it works on them in place across
   * ranks. Default: the arena's own memory.
   */
  ioAlloc?: (dtype: 'float32' | 'float64', n: number) => Buf;
}

export interface StepInput {
  /** [B·T] local input tokens, in layout order. */
  tokens: Int32Array;
  /** [B·T] local next-token targets (label shift done on the GLOBAL sequence before sharding). */
  targets: Int32Array;
  /** [T] global positions of the local tokens. */
  pos: Int32Array;
  /** Global sequence length. */
  S: number;
  attn: AttentionOp;
  /**
   * Packed documents (B = 1): [S] the document of each global position, counting up from 0.
   * Attention stays within each document and RoPE restarts at each document's first token, so
   * every document is computed as if it were a sequence of its own.
   */
  docs?: Int32Array;
}

/**
 * RoPE positions with packed documents: each position's offset in its document (padding: 0).
 * RoPE scores depend only on q − k positions, so within a document the restart changes results by
 * rounding only; it keeps the angles as small as a document trained alone would see (the fix
 * Megatron needed for packed sequences under CP, peers.md §3.5).
 */
export function documentPositions(pos: Int32Array, docs: Int32Array): Int32Array {
  const start: number[] = [];
  for (let p = 0; p < docs.length; p++) if (p === 0 || docs[p] !== docs[p - 1]) start[docs[p]!] = p;
  return Int32Array.from(pos, (p) => (p < 0 ? 0 : p - start[docs[p]!]!));
}

export const IGNORE_INDEX = -1;

type IOAlloc = GPTOptions['ioAlloc'];
/** The attention op's tensors (GPTOptions.ioAlloc); kv is the one buffer k and v are halves of. */
const ATTN_IO = new Set(['q', 'kv', 'att', 'lse', 'dAtt', 'dq', 'dk', 'dv']);

/** One buffer from the arena, or for an attention tensor from ioAlloc (charged to the arena). */
function allocOne(arena: Arena, cat: 'activations' | 'scratch', name: string, n: number, dtype: DType, io: IOAlloc): Buf {
  if (!io || !ATTN_IO.has(name)) return arena.alloc(cat, n, dtype);
  const b = io(dtype, n);
  arena.track(cat, b, n * b.BYTES_PER_ELEMENT);
  return b;
}

function allocRecord<K extends string>(arena: Arena, cat: 'activations' | 'scratch', sizes: Record<K, number>, dtype: DType, io?: IOAlloc): Record<K, Buf> {
  const out = {} as Record<K, Buf>;
  for (const k of Object.keys(sizes) as K[]) out[k] = allocOne(arena, cat, k, sizes[k], dtype, io);
  return out;
}

/**
 * One block's activations; k and v are the two halves of one buffer, so that a ring scheme sends
 * [k | v] as it is instead of packing it first (ring.ts kvRing).
 */
function allocBlockActs(arena: Arena, c: GPTConfig, rows: RowShape, dtype: DType, io?: IOAlloc): BlockActs {
  const { k: nk, v: nv, ...rest } = blockActSizes(c, rows);
  const kv = allocOne(arena, 'activations', 'kv', nk + nv, dtype, io);
  return { ...allocRecord(arena, 'activations', rest, dtype, io), k: kv.subarray(0, nk), v: kv.subarray(nk) } as BlockActs;
}

export class GPT {
  readonly cfg: GPTConfig;
  readonly k: Kernels;
  readonly store: ParamStore;
  readonly params: Buf;
  readonly grads: Buf;
  readonly rows: RowShape;
  readonly checkpoint: boolean;
  private acts: BlockActs[];
  private head: Record<keyof ReturnType<typeof headActSizes>, Buf>;
  private scratch: BlockScratch & { dResid: Buf; dLogits: Buf };
  private last: StepInput | null = null;
  private readonly arena: Arena;
  private readonly dtype: DType;
  /** The attention op's saved slot (AttentionOp.savedElements) per entry of acts, grown on demand. */
  private saved: { n: number; bufs: Buf[] } | null = null;

  constructor(o: GPTOptions) {
    validateConfig(o.config);
    this.cfg = o.config;
    this.k = o.kernels;
    this.rows = o.rows;
    this.checkpoint = !!o.checkpoint;
    this.arena = o.arena;
    this.dtype = o.dtype;
    this.store = new ParamStore(o.config);
    const mult = o.flatMultiple ?? 1;
    const flat = Math.ceil(this.store.size / mult) * mult;
    this.params = o.arena.alloc('params', flat, o.dtype);
    this.grads = o.arena.alloc('grads', flat, o.dtype);
    const nActs = this.checkpoint ? 1 : o.config.layers;
    this.acts = Array.from({ length: nActs }, () => allocBlockActs(o.arena, o.config, o.rows, o.dtype, o.ioAlloc));
    this.head = allocRecord(o.arena, 'activations', headActSizes(o.config, o.rows), o.dtype);
    this.scratch = allocRecord(o.arena, 'scratch', backwardScratchSizes(o.config, o.rows), o.dtype, o.ioAlloc) as BlockScratch & { dResid: Buf; dLogits: Buf };
  }

  private ctx(inp: StepInput): BlockCtx {
    const D = headDim(this.cfg);
    const dims: AttnDims = {
      B: this.rows.B,
      S: inp.S,
      T: this.rows.T,
      H: this.cfg.heads,
      G: this.cfg.kvHeads,
      D,
      causal: true,
      ...(this.cfg.window !== undefined ? { window: this.cfg.window } : {}),
      ...(inp.docs ? { docs: inp.docs } : {}),
      scale: 1 / Math.sqrt(D),
    };
    // c.pos feeds RoPE only (attention masks by the op's own positions and dims.docs)
    const pos = inp.docs ? documentPositions(inp.pos, inp.docs) : inp.pos;
    return { cfg: this.cfg, k: this.k, store: this.store, params: this.params, grads: this.grads, attn: inp.attn, pos, dims };
  }

  /**
   * Saved slots of the step's attention op, one per entry of acts (one under checkpointing, where
   * the recomputed forward refills it before each layer's backward); none if it saves nothing.
   * Allocated from the arena as activations when first needed or when a larger one is asked for.
   */
  private savedSlots(c: BlockCtx): (Buf | undefined)[] {
    const n = c.attn.savedElements?.(c.dims) ?? 0;
    if (n <= 0) return [];
    if (!this.saved || this.saved.n < n) {
      for (const b of this.saved?.bufs ?? []) this.arena.free(b);
      this.saved = { n, bufs: this.acts.map(() => this.arena.alloc('activations', n, this.dtype)) };
    }
    return this.saved.bufs.map((b) => (b.length === n ? b : b.subarray(0, n)));
  }

  private resid(l: number): Buf {
    const NC = this.rows.B * this.rows.T * this.cfg.width;
    return this.head.resid.subarray(l * NC, (l + 1) * NC);
  }

  private headWeight(buf: Buf): Buf {
    return this.store.view(buf, this.cfg.tiedHead ? 'wte' : 'lm_head.weight');
  }

  /** Runs the forward pass; returns the SUM of token losses (nats) and the count of counted targets. */
  async forward(inp: StepInput): Promise<{ lossSum: number; count: number }> {
    const { cfg, k, rows } = this;
    const N = rows.B * rows.T;
    if (inp.tokens.length !== N || inp.targets.length !== N || inp.pos.length !== rows.T) {
      throw new Error(`model: expected ${N} tokens/targets and ${rows.T} positions, got ${inp.tokens.length}/${inp.targets.length}/${inp.pos.length}`);
    }
    this.last = inp;
    const c = this.ctx(inp);
    const saved = this.savedSlots(c);
    k.embeddingForward({ out: this.resid(0) }, { tokens: inp.tokens, weight: this.store.view(this.params, 'wte') }, { N, C: cfg.width });
    for (let l = 0; l < cfg.layers; l++) {
      const a = this.checkpoint ? 0 : l;
      await blockForward(c, l, this.acts[a]!, this.scratch, this.resid(l), this.resid(l + 1), saved[a]);
    }
    const h = this.head;
    const C = cfg.width;
    if (cfg.norm === 'layernorm') {
      k.layerNormForward(
        { out: h.lnf, mean: h.lnfMean, rstd: h.lnfRstd },
        { x: this.resid(cfg.layers), weight: this.store.view(this.params, 'lnf.weight'), bias: this.store.view(this.params, 'lnf.bias') },
        { N, C, eps: cfg.normEps },
      );
    } else {
      k.rmsNormForward({ out: h.lnf, rstd: h.lnfRstd }, { x: this.resid(cfg.layers), weight: this.store.view(this.params, 'lnf.weight') }, { N, C, eps: cfg.normEps });
    }
    k.matmulForward({ out: h.logits }, { x: h.lnf, weight: this.headWeight(this.params), bias: null }, { N, K: C, M: cfg.vocab });
    const count = k.crossEntropyForward({ losses: h.losses, lse: h.ceLse }, { logits: h.logits, targets: inp.targets }, { N, V: cfg.vocab, ignoreIndex: IGNORE_INDEX });
    let lossSum = 0;
    for (let n = 0; n < N; n++) lossSum += h.losses[n]!;
    return { lossSum, count };
  }

  /**
   * Backward of the last forward, with d(loss)/d(token loss) = scale for every counted token
   * (scale = 1 / global count of counted tokens). Accumulates into `grads`.
   */
  async backward(scale: number): Promise<void> {
    const inp = this.last;
    if (!inp) throw new Error('model: backward called before forward');
    const { cfg, k, rows } = this;
    const N = rows.B * rows.T;
    const C = cfg.width;
    const c = this.ctx(inp);
    const h = this.head;
    const s = this.scratch;
    s.dLogits.fill(0);
    k.crossEntropyBackward({ dLogits: s.dLogits }, { logits: h.logits, lse: h.ceLse, targets: inp.targets }, { N, V: cfg.vocab, ignoreIndex: IGNORE_INDEX, scale });
    k.matmulBackward({ dx: s.dNorm, dWeight: this.headWeight(this.grads), dBias: null }, { dOut: s.dLogits, x: h.lnf, weight: this.headWeight(this.params) }, { N, K: C, M: cfg.vocab, overwrite: true });
    s.dResid.fill(0);
    const xL = this.resid(cfg.layers);
    if (cfg.norm === 'layernorm') {
      k.layerNormBackward(
        { dx: s.dResid, dWeight: this.store.view(this.grads, 'lnf.weight'), dBias: this.store.view(this.grads, 'lnf.bias') },
        { dOut: s.dNorm, x: xL, weight: this.store.view(this.params, 'lnf.weight'), mean: h.lnfMean, rstd: h.lnfRstd },
        { N, C },
      );
    } else {
      k.rmsNormBackward(
        { dx: s.dResid, dWeight: this.store.view(this.grads, 'lnf.weight') },
        { dOut: s.dNorm, x: xL, weight: this.store.view(this.params, 'lnf.weight'), rstd: h.lnfRstd },
        { N, C },
      );
    }
    const saved = this.savedSlots(c);
    for (let l = cfg.layers - 1; l >= 0; l--) {
      const ai = this.checkpoint ? 0 : l;
      const a = this.acts[ai]!;
      // Recompute this block's activations from its saved input (the output is rewritten unchanged).
      if (this.checkpoint) await blockForward(c, l, a, s, this.resid(l), this.resid(l + 1), saved[ai]);
      await blockBackward(c, l, a, s, this.resid(l), s.dResid, saved[ai]);
    }
    k.embeddingBackward({ dWeight: this.store.view(this.grads, 'wte') }, { dOut: s.dResid, tokens: inp.tokens }, { N, C });
  }

  /** Logits of the last forward: [B·T, V]. */
  logits(): Buf {
    return this.head.logits;
  }
}
