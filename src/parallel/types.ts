/**
 * Sequence-parallel attention contracts. The model sees a strategy only through AttentionOp; a
 * strategy is kernels plus collectives. Layouts say which GLOBAL positions each rank holds, in
 * local order; RoPE, masks and the data loader all use them.
 */
import type { Buf } from '../tensor/dtype.js';

export type SchemeName = 'local' | 'ulysses' | 'ring' | 'zigzag' | 'stripe' | 'rsa' | 'allgather' | 'hybrid';

export interface SeqLayout {
  /** Global sequence length S (with padding, the padded length). */
  readonly S: number;
  /**
   * Padded layouts (layout.ts padLayout): the real tokens, positions [0, realS); the last S − realS
   * positions are padding and reported as −1. Absent: every token is real.
   */
  readonly realS?: number;
  /** Ranks sharing one sequence. */
  readonly P: number;
  /** Global positions of rank r's local tokens, in local order: Int32Array [T]. */
  positions(rank: number): Int32Array;
}

/** Dimensions of one attention call on one rank. q: [B, T, H, D]; k, v: [B, T, G, D]; T = S/P. */
export interface AttnDims {
  B: number;
  /** Global sequence length. */
  S: number;
  /** Tokens held by this rank. */
  T: number;
  H: number;
  G: number;
  D: number;
  causal: boolean;
  /**
   * Sliding window: a query at global position p attends only keys at positions ≥ p − window
   * (kernels/types.ts AttnMask windowLeft; with causal, the window + 1 positions up to p). Absent:
   * no window. A non-negative integer.
   */
  window?: number;
  /**
   * Packed documents (B = 1): docs[p] is the document of global position p (non-decreasing from
   * 0); a query attends only keys of its own document. The kernels see each document's positions
   * moved S apart (local.ts maskPositions) with a window of at most S, so no kernel changes.
   */
  docs?: Int32Array;
  scale: number;
}

/** What a scheme costs per attention layer per micro-batch, for one rank. */
export interface AttnCost {
  flops: number;
  /** Bytes this rank sends, per mesh axis, forward + backward. */
  commBytes: Record<string, number>;
  /** Extra bytes held between forward and backward (beyond q, k, v, out, lse), per layer. */
  savedBytes: number;
}

/**
 * Attention bound to a mesh: what the model calls. Inputs are this rank's shards in layout order.
 * out: [B, T, H, D]; lse: [B, T, H] (float32 or float64, same dtype as out).
 * backward accumulates dq, dk, dv (the caller zeroes them).
 *
 * `saved` (DESIGN §4: backward receives what forward saved as named inputs): a buffer of
 * savedElements(d) elements that forward fills and the matching backward reads. Ulysses saves its
 * head-side q, k, v, out, lse there, so that backward exchanges only dOut and the gradients. The
 * caller owns it (the model keeps one per layer with the layer's activations); without it
 * (or when savedElements is 0 or absent) the op saves nothing and backward exchanges again.
 */
export interface AttentionOp {
  readonly name: SchemeName;
  readonly layout: SeqLayout;
  /** Elements (activation dtype) of the `saved` slot for dims d; 0 or absent: nothing to save. */
  savedElements?(d: AttnDims): number;
  /**
   * Where the op works on its callers' tensors in place across ranks (Ulysses' shared path):
   * memory for them — the model's q, k|v, out, lse, dOut, dq, dk, dv. Absent: any memory does.
   */
  ioAlloc?(dtype: 'float32' | 'float64', n: number): Buf;
  forward(o: { out: Buf; lse: Buf; saved?: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims): Promise<void>;
  backward(
    g: { dq: Buf; dk: Buf; dv: Buf },
    i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf; saved?: Buf },
    d: AttnDims,
  ): Promise<void>;
}
