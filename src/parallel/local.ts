/**
 * Single-device attention (P = 1) and the "inner" attention interface that Ulysses wraps: attention
 * over tokens this rank holds for all positions it needs, after any head/sequence exchange.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels, AttnBlockDims } from '../kernels/types.js';
import type { AttentionOp, AttnDims, SeqLayout } from './types.js';
import { contiguousLayout } from './layout.js';
import { Scratch } from './util.js';

/** Attention over tokens with global positions `pos` [T]; q [B,T,H,D], k/v [B,T,G,D]. */
export interface InnerAttention {
  forward(o: { out: Buf; lse: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims, pos: Int32Array): Promise<void>;
  backward(
    g: { dq: Buf; dk: Buf; dv: Buf },
    i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf },
    d: AttnDims,
    pos: Int32Array,
  ): Promise<void>;
}

export function blockDims(d: AttnDims, Tq: number, Tk: number): AttnBlockDims {
  let mask: AttnBlockDims['mask'] = d.window === undefined ? { causal: d.causal } : { causal: d.causal, windowLeft: d.window };
  // Documents: maskPositions puts them S apart, so a window of S on either side keeps each
  // query inside its own document (and within it every pair is less than S apart).
  if (d.docs) mask = { causal: d.causal, windowLeft: Math.min(d.window ?? d.S, d.S), ...(d.causal ? {} : { windowRight: d.S }) };
  return { B: d.B, Tq, Tk, H: d.H, G: d.G, D: d.D, scale: d.scale, mask };
}

/**
 * The positions the kernels mask by: `pos` itself, or with packed documents (d.docs) each
 * position p moved to p + docs[p]·S, so tokens of different documents are more than S apart
 * (blockDims' window then separates them). Padding (−1) stays −1.
 */
export function maskPositions(pos: Int32Array, d: AttnDims): Int32Array {
  const docs = d.docs;
  if (!docs) return pos;
  const out = new Int32Array(pos.length);
  for (let i = 0; i < pos.length; i++) {
    const p = pos[i]!;
    if (p >= docs.length) throw new Error(`attention: position ${p} has no document (docs has ${docs.length} entries)`);
    out[i] = p < 0 ? -1 : p + docs[p]! * d.S;
    // the native kernels take positions below 2^24 (exact as float32)
    if (out[i]! >= 2 ** 24) throw new Error(`attention: packed documents: position ${p} of document ${docs[p]} maps to ${out[i]} >= 2^24 (S=${d.S}); use fewer documents per sequence or a shorter one`);
  }
  return out;
}

/** Checks buffer sizes against dims once per call, so a wrong shard size is an error, not a NaN. */
export function checkShapes(what: string, d: AttnDims, bufs: Record<string, Buf | undefined>): void {
  if (d.window !== undefined && !(Number.isInteger(d.window) && d.window >= 0)) throw new Error(`${what}: window=${d.window} must be a non-negative integer`);
  if (d.docs) checkDocs(what, d.docs, d.B);
  const want: Record<string, number> = {
    q: d.B * d.T * d.H * d.D,
    out: d.B * d.T * d.H * d.D,
    dq: d.B * d.T * d.H * d.D,
    dOut: d.B * d.T * d.H * d.D,
    k: d.B * d.T * d.G * d.D,
    v: d.B * d.T * d.G * d.D,
    dk: d.B * d.T * d.G * d.D,
    dv: d.B * d.T * d.G * d.D,
    lse: d.B * d.T * d.H,
  };
  for (const [name, b] of Object.entries(bufs)) {
    if (name === 'saved') continue; // sized by the op's savedElements, checked where it is read
    if (b && b.length !== want[name]) throw new Error(`${what}: ${name} has ${b.length} elements, expected ${want[name]} for B=${d.B} T=${d.T} H=${d.H} G=${d.G} D=${d.D}`);
  }
}

/** Throws unless docs is a non-decreasing list of document indices from 0 and B = 1. */
export function checkDocs(what: string, docs: Int32Array, B: number): void {
  if (B !== 1) throw new Error(`${what}: packed documents need B=1 (the rows of a batch share positions), got B=${B}`);
  for (let p = 0; p < docs.length; p++) {
    const prev = p === 0 ? 0 : docs[p - 1]!;
    if (docs[p]! < prev || docs[p]! > prev + 1 || (p === 0 && docs[0] !== 0)) throw new Error(`${what}: docs[${p}]=${docs[p]} after ${p === 0 ? 'the start' : docs[p - 1]}: documents must count up from 0 by steps of 1`);
  }
}

/** The plain kernel on the whole local block: every rank's own tokens against themselves. */
export function localInner(kernels: Kernels, scratch: Scratch): InnerAttention {
  return {
    async forward(o, i, d, pos) {
      o.out.fill(0);
      o.lse.fill(-Infinity);
      const mp = maskPositions(pos, d);
      kernels.attnForward(o, { ...i, qPos: mp, kPos: mp }, blockDims(d, d.T, d.T));
    },
    async backward(g, i, d, pos) {
      const delta = scratch.alloc(i.out, d.B * d.T * d.H);
      kernels.attnDelta({ delta }, { dOut: i.dOut, out: i.out }, { B: d.B, T: d.T, H: d.H, D: d.D });
      const mp = maskPositions(pos, d);
      kernels.attnBackward(g, { ...i, delta, qPos: mp, kPos: mp }, blockDims(d, d.T, d.T));
    },
  };
}

/**
 * P = 1: the kernel on the whole sequence with positions 0..S−1 (or the positions of `layout`, so a
 * single device can also run on reordered tokens).
 */
export function createLocalAttention(kernels: Kernels, S: number, layout: SeqLayout = contiguousLayout(S, 1, 'local')): AttentionOp & { readonly scratch: Scratch; readonly positions: Int32Array } {
  if (layout.P !== 1) throw new Error(`local: layout has sp=${layout.P}, expected 1`);
  const scratch = new Scratch();
  const inner = localInner(kernels, scratch);
  const pos = layout.positions(0);
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T !== S) throw new Error(`local: dims S=${d.S} T=${d.T} but op built for S=${S}`);
  };
  return {
    name: 'local',
    layout,
    scratch,
    positions: pos,
    async forward(o, i, d) {
      check(d);
      checkShapes('local', d, { ...o, ...i });
      scratch.begin();
      await inner.forward(o, i, d, pos);
    },
    async backward(g, i, d) {
      check(d);
      checkShapes('local', d, { ...g, ...i });
      scratch.begin();
      await inner.backward(g, i, d, pos);
    },
  };
}
