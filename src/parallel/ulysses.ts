/**
 * DeepSpeed-Ulysses (algorithms.md §3): an all-to-all turns "all heads, my T tokens" into "H/P
 * heads, all P·T tokens of the group", attention runs on whole sequences for those heads, and the
 * inverse all-to-all brings the output home. The exchange is a permutation, so forward needs no
 * reduction; only GQA replication (P % G == 0) sums dK/dV over the copies of a kv head.
 *
 * The gathered tokens are the group members' tokens in rank order; their global positions go to the
 * inner attention, so any layout works (USP runs it on zigzag pieces, §8.3).
 *
 * With a `saved` slot (AttentionOp), forward leaves its head-side q, k, v, out, lse there and
 * backward exchanges only dOut in and dq, dk, dv back: 4 all-to-alls instead of 9 (DeepSpeed's
 * autograd keeps the same tensors). The slot costs [B, P·T, H/P | G/P, D] for each of them — as
 * much again as the sequence-side q, k, v, out the model keeps. Without a slot backward exchanges
 * q, k, v, out, lse again.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttentionOp, AttnDims, SeqLayout } from './types.js';
import { contiguousLayout } from './layout.js';
import { checkShapes, localInner, type InnerAttention } from './local.js';
import { canShare, ulyssesShared } from './ulysses-shared.js';
import { Scratch, a2aChunk, a2aMaps, kvHeadSplit, queryHeadSplit, type A2AMaps, type A2APart } from './util.js';

/** Head splits of one Ulysses exchange; the error messages name the scheme and axis. */
export function ulyssesSplits(what: string, H: number, G: number, P: number, axis = 'sp') {
  const qs = queryHeadSplit(what, H, P, axis);
  const kvs = kvHeadSplit(what, H, G, P, axis);
  return { qs, kvs };
}

/**
 * Elements of the saved slot's parts — head-side q, k, v, out, lse [B, P·T, H/P | G/P | G/P |
 * H/P, D | D | D | D | 1] — for one Ulysses exchange over P ranks of T tokens each (the op and
 * cost() both size it here).
 */
export function ulyssesSavedSizes(what: string, d: { B: number; T: number; H: number; G: number; D: number }, P: number, axis = 'sp'): number[] {
  const { qs, kvs } = ulyssesSplits(what, d.H, d.G, P, axis);
  const parts: A2APart[] = [{ split: qs, row: d.D }, { split: kvs, row: d.D }, { split: kvs, row: d.D }, { split: qs, row: d.D }, { split: qs, row: 1 }];
  return parts.map((x) => a2aChunk(x, d.B, d.T) * P);
}

/**
 * The Ulysses exchange over `group` around an inner attention. `layout` gives the positions of the
 * group's members (indexed by group rank); gathered positions are their concatenation.
 *
 * One row all-to-all per tensor: it reads each destination's heads straight out of the
 * sequence-side rows and writes the head-side layout [B, P·T, heads/P, row] the inner attention
 * reads (and back), so nothing is packed or unpacked around it.
 */
export function ulyssesWrap(
  what: string,
  group: ProcessGroup,
  memberPositions: readonly Int32Array[],
  inner: InnerAttention,
  scratch: Scratch,
  axis = 'sp',
) {
  const P = group.size;
  const gathered = new Int32Array(memberPositions.reduce((n, p) => n + p.length, 0));
  memberPositions.reduce((off, p) => (gathered.set(p, off), off + p.length), 0);

  // Row maps per exchanged tensor shape, built on first use.
  const rowMaps = new Map<string, A2AMaps>();
  const mapsOf = (part: A2APart, B: number, T: number): A2AMaps => {
    const key = `${part.split.heads}/${part.split.perRank}/${part.row}/${B}/${T}`;
    let m = rowMaps.get(key);
    if (!m) rowMaps.set(key, (m = a2aMaps(part, B, T, P)));
    return m;
  };
  const sizeOf = (part: A2APart, B: number, T: number) => a2aChunk(part, B, T) * P;

  // Both directions are one allToAllRows: the heads are picked out of the sequence-side rows (and
  // put back) by the exchange itself, so each byte is copied once (threads: straight from the
  // peer's tensor) instead of packed, exchanged and unpacked.
  /** [B, T, heads, row] x -allToAll-> [B, P·T, heads/P, row] (into `dest`, or a new scratch buffer). */
  const toHeads = async (x: Buf, part: A2APart, B: number, T: number, dest?: Buf): Promise<Buf> => {
    const head = dest ?? scratch.alloc(x, sizeOf(part, B, T));
    await group.allToAllRows(head, x, mapsOf(part, B, T).toHeads);
    return head;
  };

  /** [B, P·T, heads/P, row] y -allToAll-> x [B, T, heads, row], overwritten or (add) accumulated. */
  const toSeq = async (x: Buf, y: Buf, part: A2APart, B: number, T: number, add: boolean): Promise<void> => {
    const maps = mapsOf(part, B, T);
    if (!add && maps.replicated) throw new Error(`${what}: overwriting replicated heads has no single source`);
    await group.allToAllRows(x, y, maps.toSeq, add);
  };

  /** The exchanged parts and the saved slot's views, in the order q, k, v, out, lse. */
  const parts = (d: AttnDims) => {
    const { qs, kvs } = ulyssesSplits(what, d.H, d.G, P, axis);
    const qP: A2APart = { split: qs, row: d.D };
    const kvP: A2APart = { split: kvs, row: d.D };
    const lseP: A2APart = { split: qs, row: 1 };
    return { qs, kvs, qP, kvP, lseP, savedSizes: ulyssesSavedSizes(what, d, P, axis) };
  };
  const savedViews = (saved: Buf, sizes: number[]): Buf[] => {
    const need = sizes.reduce((a, b) => a + b, 0);
    if (saved.length < need) throw new Error(`${what}: saved slot has ${saved.length} elements, needs ${need}`);
    let off = 0;
    return sizes.map((n) => saved.subarray(off, (off += n)));
  };

  return {
    gathered,
    savedElements(d: AttnDims): number {
      return parts(d).savedSizes.reduce((a, b) => a + b, 0);
    },

    async forward(o: { out: Buf; lse: Buf; saved?: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims): Promise<void> {
      const { B, T } = d;
      const { qs, kvs, qP, kvP, lseP, savedSizes } = parts(d);
      const keep = o.saved ? savedViews(o.saved, savedSizes) : [];
      // [B, T, H|G|G, D] q, k, v -allToAll(sp) ×3-> [B, P·T, H/P | G/P | G/P, D] (kv replicated when P % G == 0)
      const q = await toHeads(i.q, qP, B, T, keep[0]);
      const k = await toHeads(i.k, kvP, B, T, keep[1]);
      const v = await toHeads(i.v, kvP, B, T, keep[2]);
      const outH = keep[3] ?? scratch.alloc(o.out, q.length);
      const lseH = keep[4] ?? scratch.alloc(o.lse, B * P * T * qs.perRank);
      await inner.forward({ out: outH, lse: lseH }, { q, k, v }, { ...d, T: P * T, H: qs.perRank, G: kvs.perRank }, gathered);
      // [B, P·T, H/P, D|1] out, lse -allToAll(sp) ×2-> [B, T, H, D|1]
      await toSeq(o.out, outH, qP, B, T, false);
      await toSeq(o.lse, lseH, lseP, B, T, false);
    },

    async backward(
      g: { dq: Buf; dk: Buf; dv: Buf },
      i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf; saved?: Buf },
      d: AttnDims,
    ): Promise<void> {
      const { B, T } = d;
      const { qs, kvs, qP, kvP, lseP, savedSizes } = parts(d);
      let q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf;
      if (i.saved) {
        [q, k, v, out, lse] = savedViews(i.saved, savedSizes) as [Buf, Buf, Buf, Buf, Buf];
      } else {
        // Nothing saved: what forward exchanged goes again.
        // [B, T, heads, D|1] q, k, v, out, lse -allToAll(sp) ×5-> [B, P·T, heads/P, D|1]
        const heads: Buf[] = [];
        for (const [x, part] of [[i.q, qP], [i.k, kvP], [i.v, kvP], [i.out, qP], [i.lse, lseP]] as const) heads.push(await toHeads(x, part, B, T));
        [q, k, v, out, lse] = heads as [Buf, Buf, Buf, Buf, Buf];
      }
      // [B, T, H, D] dOut -allToAll(sp)-> [B, P·T, H/P, D]
      const dOut = await toHeads(i.dOut, qP, B, T);
      // Scratch is reused between calls and the inner backward accumulates: zero the gradients.
      const dqH = scratch.alloc(g.dq, q.length).fill(0);
      const dkH = scratch.alloc(g.dk, k.length).fill(0);
      const dvH = scratch.alloc(g.dv, v.length).fill(0);
      await inner.backward({ dq: dqH, dk: dkH, dv: dvH }, { dOut, q, k, v, out, lse }, { ...d, T: P * T, H: qs.perRank, G: kvs.perRank }, gathered);
      // [B, P·T, H/P | G/P | G/P, D] dq, dk, dv -allToAll(sp) ×3-> [B, T, H|G|G, D], replicas of a kv head summed.
      await toSeq(g.dq, dqH, qP, B, T, true);
      await toSeq(g.dk, dkH, kvP, B, T, true);
      await toSeq(g.dv, dvH, kvP, B, T, true);
    },
  };
}

/**
 * Ulysses over the sp group with the local kernel inside, on `layout` (contiguous by default).
 * `shared`: where the group can map its members' buffers (ulysses-shared.ts), calls whose tensors
 * all come from the op's ioAlloc run the kernels on the members' tensors in place, with no
 * exchange and no saved slot; other calls exchange as usual.
 */
export function createUlyssesAttention(
  group: ProcessGroup,
  kernels: Kernels,
  S: number,
  layout: SeqLayout = contiguousLayout(S, group.size, 'ulysses'),
  opts: { shared?: boolean } = {},
): AttentionOp & { readonly scratch: Scratch; readonly positions: Int32Array } {
  const P = group.size;
  if (layout.P !== P || layout.S !== S) throw new Error(`ulysses: layout (S=${layout.S}, sp=${layout.P}) does not match S=${S}, sp=${P}`);
  const scratch = new Scratch(group);
  const members = Array.from({ length: P }, (_, p) => layout.positions(p));
  const wrap = ulyssesWrap('ulysses', group, members, localInner(kernels, scratch), scratch);
  const zc = opts.shared && P > 1 && canShare(group) ? ulyssesShared(group, kernels, members, scratch) : null;
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T * P !== S) throw new Error(`ulysses: dims S=${d.S} T=${d.T} but op built for S=${S}, sp=${P}`);
    ulyssesSplits('ulysses', d.H, d.G, P);
  };
  return {
    name: 'ulysses',
    layout,
    scratch,
    positions: members[group.rank]!,
    // The shared path keeps nothing: backward reads the members' tensors where they are.
    savedElements: (d) => {
      ulyssesSplits('ulysses', d.H, d.G, P);
      return zc ? 0 : wrap.savedElements(d);
    },
    ...(zc ? { ioAlloc: (dtype: 'float32' | 'float64', n: number) => group.allocBuffer(dtype, n) } : {}),
    async forward(o, i, d) {
      check(d);
      checkShapes('ulysses', d, { ...o, ...i });
      scratch.begin();
      if (zc && !o.saved && zc.usable([i.q, i.k, i.v, o.out, o.lse])) await zc.forward(o, i, d);
      else await wrap.forward(o, i, d);
    },
    async backward(g, i, d) {
      check(d);
      checkShapes('ulysses', d, { ...g, ...i });
      scratch.begin();
      if (zc && !i.saved && zc.usable([i.dOut, i.q, i.k, i.v, i.out, i.lse, g.dq, g.dk, g.dv])) await zc.backward(g, i, d);
      else await wrap.backward(g, i, d);
    },
  };
}
