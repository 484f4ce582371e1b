/**
 * DeepSpeed-Ulysses (algorithms.md §3): an all-to-all turns "all heads, my T tokens" into "H/P
 * heads, all P·T tokens of the group", attention runs on whole sequences for those heads, and the
 * inverse all-to-all brings the output home. The exchange is a permutation, so forward needs no
 * reduction; only GQA replication (P % G == 0) sums dK/dV over the copies of a kv head.
 *
 * The gathered tokens are the group members' tokens in rank order; their global positions go to the
 * inner attention, so any layout works (USP runs it on zigzag pieces, §8.3).
 *
 * The op is stateless between forward and backward (AttentionOp hands backward the sequence-layout
 * q, k, v, out, lse), so backward exchanges them again rather than keeping head-layout copies.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttentionOp, AttnDims, SeqLayout } from './types.js';
import { contiguousLayout } from './layout.js';
import { checkShapes, localInner, type InnerAttention } from './local.js';
import {
  Scratch,
  a2aChunk,
  kvHeadSplit,
  packHeadToSeq,
  packSeqToHead,
  queryHeadSplit,
  unpackHeadToSeq,
  unpackSeqToHead,
  type A2APart,
} from './util.js';

/** Head splits of one Ulysses exchange; the error messages name the scheme and axis. */
export function ulyssesSplits(what: string, H: number, G: number, P: number, axis = 'sp') {
  const qs = queryHeadSplit(what, H, P, axis);
  const kvs = kvHeadSplit(what, H, G, P, axis);
  return { qs, kvs };
}

/**
 * The Ulysses exchange over `group` around an inner attention. `layout` gives the positions of the
 * group's members (indexed by group rank); gathered positions are their concatenation.
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

  const exchange = async (send: Buf, n: number): Promise<Buf> => {
    const recv = scratch.alloc(send, n * P);
    await group.allToAll(recv, send);
    return recv;
  };

  return {
    gathered,
    async forward(o: { out: Buf; lse: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims): Promise<void> {
      const { B, T, H, G, D } = d;
      const { qs, kvs } = ulyssesSplits(what, H, G, P, axis);
      const Hl = qs.perRank;
      const Gl = kvs.perRank;
      const Tu = P * T;
      const inParts: A2APart[] = [{ split: qs, row: D }, { split: kvs, row: D }, { split: kvs, row: D }];
      const nIn = a2aChunk(inParts, B, T);
      const send = scratch.alloc(i.q, nIn * P);
      packSeqToHead(send, [i.q, i.k, i.v], inParts, B, T, P);
      // [B, T, H|G|G, D] q|k|v -allToAll(sp)-> [B, P·T, H/P | G/P | G/P, D] (kv replicated when P % G == 0)
      const recv = await exchange(send, nIn);
      const qH = scratch.alloc(i.q, B * Tu * Hl * D);
      const kH = scratch.alloc(i.q, B * Tu * Gl * D);
      const vH = scratch.alloc(i.q, B * Tu * Gl * D);
      unpackSeqToHead([qH, kH, vH], recv, inParts, B, T, P);
      const outH = scratch.alloc(o.out, B * Tu * Hl * D);
      const lseH = scratch.alloc(o.lse, B * Tu * Hl);
      await inner.forward({ out: outH, lse: lseH }, { q: qH, k: kH, v: vH }, { ...d, T: Tu, H: Hl, G: Gl }, gathered);
      const outParts: A2APart[] = [{ split: qs, row: D }, { split: qs, row: 1 }];
      const nOut = a2aChunk(outParts, B, T);
      const send2 = scratch.alloc(o.out, nOut * P);
      packHeadToSeq(send2, [outH, lseH], outParts, B, T, P);
      // [B, P·T, H/P, D] out|lse -allToAll(sp)-> [B, T, H, D]
      const recv2 = await exchange(send2, nOut);
      unpackHeadToSeq([o.out, o.lse], recv2, outParts, B, T, P, false);
    },

    async backward(
      g: { dq: Buf; dk: Buf; dv: Buf },
      i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf },
      d: AttnDims,
    ): Promise<void> {
      const { B, T, H, G, D } = d;
      const { qs, kvs } = ulyssesSplits(what, H, G, P, axis);
      const Hl = qs.perRank;
      const Gl = kvs.perRank;
      const Tu = P * T;
      const q = { split: qs, row: D };
      const kv = { split: kvs, row: D };
      const inParts: A2APart[] = [q, kv, kv, q, q, { split: qs, row: 1 }];
      const nIn = a2aChunk(inParts, B, T);
      const send = scratch.alloc(i.q, nIn * P);
      packSeqToHead(send, [i.q, i.k, i.v, i.out, i.dOut, i.lse], inParts, B, T, P);
      // [B, T, heads, D|1] q|k|v|out|dOut|lse -allToAll(sp)-> [B, P·T, heads/P, D|1]
      const recv = await exchange(send, nIn);
      const qH = scratch.alloc(i.q, B * Tu * Hl * D);
      const kH = scratch.alloc(i.q, B * Tu * Gl * D);
      const vH = scratch.alloc(i.q, B * Tu * Gl * D);
      const outH = scratch.alloc(i.q, B * Tu * Hl * D);
      const dOutH = scratch.alloc(i.q, B * Tu * Hl * D);
      const lseH = scratch.alloc(i.q, B * Tu * Hl);
      unpackSeqToHead([qH, kH, vH, outH, dOutH, lseH], recv, inParts, B, T, P);
      const dqH = scratch.alloc(g.dq, B * Tu * Hl * D);
      const dkH = scratch.alloc(g.dq, B * Tu * Gl * D);
      const dvH = scratch.alloc(g.dq, B * Tu * Gl * D);
      await inner.backward(
        { dq: dqH, dk: dkH, dv: dvH },
        { dOut: dOutH, q: qH, k: kH, v: vH, out: outH, lse: lseH },
        { ...d, T: Tu, H: Hl, G: Gl },
        gathered,
      );
      const outParts: A2APart[] = [q, kv, kv];
      const nOut = a2aChunk(outParts, B, T);
      const send2 = scratch.alloc(g.dq, nOut * P);
      packHeadToSeq(send2, [dqH, dkH, dvH], outParts, B, T, P);
      // [B, P·T, H/P | G/P | G/P, D] dq|dk|dv -allToAll(sp)-> [B, T, H|G|G, D], replicas of a kv head summed
      const recv2 = await exchange(send2, nOut);
      unpackHeadToSeq([g.dq, g.dk, g.dv], recv2, outParts, B, T, P, true);
    },
  };
}

/** Ulysses over the sp group with the local kernel inside, on `layout` (contiguous by default). */
export function createUlyssesAttention(
  group: ProcessGroup,
  kernels: Kernels,
  S: number,
  layout: SeqLayout = contiguousLayout(S, group.size, 'ulysses'),
): AttentionOp & { readonly scratch: Scratch; readonly positions: Int32Array } {
  const P = group.size;
  if (layout.P !== P || layout.S !== S) throw new Error(`ulysses: layout (S=${layout.S}, sp=${layout.P}) does not match S=${S}, sp=${P}`);
  const scratch = new Scratch();
  const members = Array.from({ length: P }, (_, p) => layout.positions(p));
  const wrap = ulyssesWrap('ulysses', group, members, localInner(kernels, scratch), scratch);
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T * P !== S) throw new Error(`ulysses: dims S=${d.S} T=${d.T} but op built for S=${S}, sp=${P}`);
    ulyssesSplits('ulysses', d.H, d.G, P);
  };
  return {
    name: 'ulysses',
    layout,
    scratch,
    positions: members[group.rank]!,
    async forward(o, i, d) {
      check(d);
      checkShapes('ulysses', d, { ...o, ...i });
      scratch.begin();
      await wrap.forward(o, i, d);
    },
    async backward(g, i, d) {
      check(d);
      checkShapes('ulysses', d, { ...g, ...i });
      scratch.begin();
      await wrap.backward(g, i, d);
    },
  };
}
