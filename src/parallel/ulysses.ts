/**
 * DeepSpeed-Ulysses (algorithms.md §3): an all-to-all turns "all heads, my T tokens" into "H/P
 * heads, all P·T tokens of the group", attention runs on whole sequences for those heads, and the
 * inverse all-to-all brings the output home. The exchange is a permutation, so forward needs no
 * reduction; only GQA replication (P % G == 0) sums dK/dV over the copies of a kv head.
 *
 * The gathered tokens are the group members' tokens in rank order; their global positions go to the
 * inner attention, so any layout works (USP runs it on zigzag pieces, §8.3).
 *
 * Called with a key (the model's layer index, AttentionOp), forward keeps the head-side q, k, v,
 * out, lse of that call in a pool of its own and backward(key) exchanges only dOut in and dq, dk,
 * dv back: 4 all-to-alls instead of 9 (DeepSpeed's autograd keeps the same tensors). That costs
 * the head-side copies per layer, [B, P·T, H/P | G/P, D] — as much again as the sequence-side q, k,
 * v, out the model keeps. Without a key (or if the buffers or dims differ from the kept call's)
 * backward exchanges q, k, v, out, lse again, statelessly.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttentionOp, AttnDims, SeqLayout } from './types.js';
import { contiguousLayout } from './layout.js';
import { checkShapes, localInner, type InnerAttention } from './local.js';
import { Scratch, a2aChunk, a2aRows, kvHeadSplit, packSeqToHead, queryHeadSplit, reorderSrcMajor, unpackHeadToSeq, type A2APart, type A2ARows } from './util.js';

/** Head splits of one Ulysses exchange; the error messages name the scheme and axis. */
export function ulyssesSplits(what: string, H: number, G: number, P: number, axis = 'sp') {
  const qs = queryHeadSplit(what, H, P, axis);
  const kvs = kvHeadSplit(what, H, G, P, axis);
  return { qs, kvs };
}

/**
 * The Ulysses exchange over `group` around an inner attention. `layout` gives the positions of the
 * group's members (indexed by group rank); gathered positions are their concatenation.
 *
 * One all-to-all per tensor rather than one for all of them packed: the received chunks [P][B, T,
 * heads/P, row] are then, for B = 1, exactly the head-side layout [B, P·T, heads/P, row] the inner
 * attention reads (and its outputs exactly the send layout back), so only the strided head gather /
 * scatter on the sequence side copies data.
 */
export function ulyssesWrap(
  what: string,
  group: ProcessGroup,
  kernels: Kernels,
  memberPositions: readonly Int32Array[],
  inner: InnerAttention,
  scratch: Scratch,
  axis = 'sp',
) {
  const P = group.size;
  const gathered = new Int32Array(memberPositions.reduce((n, p) => n + p.length, 0));
  memberPositions.reduce((off, p) => (gathered.set(p, off), off + p.length), 0);

  // Row maps per exchanged tensor shape, built on first use.
  const rowMaps = new Map<string, A2ARows>();
  const rowsOf = (part: A2APart, B: number, T: number): A2ARows => {
    const key = `${part.split.heads}/${part.split.perRank}/${part.row}/${B}/${T}`;
    let m = rowMaps.get(key);
    if (!m) rowMaps.set(key, (m = a2aRows(part, B, T, P)));
    return m;
  };

  // Every exchange sends from scratch (a group buffer: peers read it in place, one copy per byte)
  // into a separate receive buffer; exchanges run one after another (a group runs its calls in
  // order anyway), so two shared slots of the largest exchange serve them all.
  const sizeOf = (part: A2APart, B: number, T: number) => a2aChunk(part, B, T) * P;
  const exchangeSlots = (like: Buf, sizes: number[]) => {
    const n = Math.max(...sizes);
    return { send: scratch.alloc(like, n), tmp: scratch.alloc(like, n) };
  };
  type Slots = ReturnType<typeof exchangeSlots>;

  /** [B, T, heads, row] x -allToAll-> [B, P·T, heads/P, row] (a new buffer of `pool`). */
  const toHeads = async (x: Buf, part: A2APart, B: number, T: number, slots: Slots, pool: Scratch = scratch): Promise<Buf> => {
    const nP = sizeOf(part, B, T);
    const head = pool.alloc(x, nP);
    const send = slots.send.subarray(0, nP);
    packSeqToHead(kernels, send, x, rowsOf(part, B, T));
    if (B === 1) {
      await group.allToAll(head, send);
      return head;
    }
    const recv = slots.tmp.subarray(0, nP);
    await group.allToAll(recv, send);
    reorderSrcMajor(head, recv, B, T, nP / (P * B * T), P, true);
    return head;
  };

  /** [B, P·T, heads/P, row] y -allToAll-> x [B, T, heads, row], overwritten or (add) accumulated. */
  const toSeq = async (x: Buf, y: Buf, part: A2APart, B: number, T: number, add: boolean, slots: Slots): Promise<void> => {
    const nP = sizeOf(part, B, T);
    let send = y;
    if (B !== 1) {
      send = slots.send.subarray(0, nP);
      reorderSrcMajor(send, y, B, T, nP / (P * B * T), P, false);
    }
    const recv = slots.tmp.subarray(0, nP);
    await group.allToAll(recv, send);
    unpackHeadToSeq(kernels, x, recv, rowsOf(part, B, T), add);
  };

  /** Head-side tensors of forward(key), valid for the next backward(key) on the same buffers and dims. */
  interface Kept {
    pool: Scratch;
    valid: boolean;
    seqSide: Buf[];
    dims: string;
    heads: [Buf, Buf, Buf, Buf, Buf];
  }
  // Pools are lent per key from forward(key) to backward(key) and then returned, so held memory is
  // the most keys alive at once: every layer without checkpointing, one with it.
  const kept = new Map<number, Kept>();
  const free: Kept[] = [];
  const keptFor = (key: number): Kept => {
    let k = kept.get(key) ?? free.pop();
    k ??= { pool: scratch.child(), valid: false, seqSide: [], dims: '', heads: [] as unknown as Kept['heads'] };
    kept.set(key, k);
    return k;
  };

  return {
    gathered,
    async forward(o: { out: Buf; lse: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims, key?: number): Promise<void> {
      const { B, T, H, G } = d;
      const { qs, kvs } = ulyssesSplits(what, H, G, P, axis);
      const qP: A2APart = { split: qs, row: d.D };
      const kvP: A2APart = { split: kvs, row: d.D };
      const lseP: A2APart = { split: qs, row: 1 };
      const slots = exchangeSlots(i.q, [qP, kvP, lseP].map((x) => sizeOf(x, B, T)));
      const keep = key === undefined ? null : keptFor(key);
      if (keep) {
        keep.valid = false;
        keep.pool.begin();
      }
      const pool = keep?.pool ?? scratch;
      // [B, T, H|G|G, D] q, k, v -allToAll(sp) ×3-> [B, P·T, H/P | G/P | G/P, D] (kv replicated when P % G == 0)
      const q = await toHeads(i.q, qP, B, T, slots, pool);
      const k = await toHeads(i.k, kvP, B, T, slots, pool);
      const v = await toHeads(i.v, kvP, B, T, slots, pool);
      const outH = pool.alloc(o.out, q.length);
      const lseH = pool.alloc(o.lse, B * P * T * qs.perRank);
      await inner.forward({ out: outH, lse: lseH }, { q, k, v }, { ...d, T: P * T, H: qs.perRank, G: kvs.perRank }, gathered);
      // [B, P·T, H/P, D|1] out, lse -allToAll(sp) ×2-> [B, T, H, D|1]
      await toSeq(o.out, outH, qP, B, T, false, slots);
      await toSeq(o.lse, lseH, lseP, B, T, false, slots);
      if (keep) Object.assign(keep, { valid: true, seqSide: [i.q, i.k, i.v, o.out, o.lse], dims: JSON.stringify(d), heads: [q, k, v, outH, lseH] });
    },

    async backward(
      g: { dq: Buf; dk: Buf; dv: Buf },
      i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf },
      d: AttnDims,
      key?: number,
    ): Promise<void> {
      const { B, T, H, G } = d;
      const { qs, kvs } = ulyssesSplits(what, H, G, P, axis);
      const qP: A2APart = { split: qs, row: d.D };
      const kvP: A2APart = { split: kvs, row: d.D };
      const lseP: A2APart = { split: qs, row: 1 };
      const slots = exchangeSlots(i.q, [qP, kvP, lseP].map((x) => sizeOf(x, B, T)));
      const st = key === undefined ? undefined : kept.get(key);
      const seqSide = [i.q, i.k, i.v, i.out, i.lse];
      const usable = !!st && st.valid && st.dims === JSON.stringify(d) && st.seqSide.every((b, j) => b === seqSide[j]);
      if (st) st.valid = false; // one backward per forward; the pool goes back once it is read
      let q: Buf, k: Buf, v: Buf, out: Buf, lse: Buf;
      if (usable) {
        [q, k, v, out, lse] = st!.heads;
      } else {
        // Nothing kept: what forward exchanged goes again.
        // [B, T, heads, D|1] q, k, v, out, lse -allToAll(sp) ×5-> [B, P·T, heads/P, D|1]
        const heads: Buf[] = [];
        for (const [x, part] of [[i.q, qP], [i.k, kvP], [i.v, kvP], [i.out, qP], [i.lse, lseP]] as const) heads.push(await toHeads(x, part, B, T, slots));
        [q, k, v, out, lse] = heads as [Buf, Buf, Buf, Buf, Buf];
      }
      // [B, T, H, D] dOut -allToAll(sp)-> [B, P·T, H/P, D]
      const dOut = await toHeads(i.dOut, qP, B, T, slots);
      // Scratch is reused between calls and the inner backward accumulates: zero the gradients.
      const dqH = scratch.alloc(g.dq, q.length).fill(0);
      const dkH = scratch.alloc(g.dk, k.length).fill(0);
      const dvH = scratch.alloc(g.dv, v.length).fill(0);
      await inner.backward({ dq: dqH, dk: dkH, dv: dvH }, { dOut, q, k, v, out, lse }, { ...d, T: P * T, H: qs.perRank, G: kvs.perRank }, gathered);
      if (st && key !== undefined) {
        kept.delete(key);
        free.push(st);
      }
      // [B, P·T, H/P | G/P | G/P, D] dq, dk, dv -allToAll(sp) ×3-> [B, T, H|G|G, D], replicas of a kv head summed.
      await toSeq(g.dq, dqH, qP, B, T, true, slots);
      await toSeq(g.dk, dkH, kvP, B, T, true, slots);
      await toSeq(g.dv, dvH, kvP, B, T, true, slots);
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
  const scratch = new Scratch(group);
  const members = Array.from({ length: P }, (_, p) => layout.positions(p));
  const wrap = ulyssesWrap('ulysses', group, kernels, members, localInner(kernels, scratch), scratch);
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T * P !== S) throw new Error(`ulysses: dims S=${d.S} T=${d.T} but op built for S=${S}, sp=${P}`);
    ulyssesSplits('ulysses', d.H, d.G, P);
  };
  return {
    name: 'ulysses',
    layout,
    scratch,
    positions: members[group.rank]!,
    async forward(o, i, d, key) {
      check(d);
      checkShapes('ulysses', d, { ...o, ...i });
      scratch.begin();
      await wrap.forward(o, i, d, key);
    },
    async backward(g, i, d, key) {
      check(d);
      checkShapes('ulysses', d, { ...g, ...i });
      scratch.begin();
      await wrap.backward(g, i, d, key);
    },
  };
}
