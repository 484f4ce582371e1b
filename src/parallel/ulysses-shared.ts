/**
 * Ulysses without the all-to-alls, for ranks that share an address space (threads, inproc: the
 * group's peerBuffers). Each rank owns kv groups [r·G/P, (r+1)·G/P) and their query heads, as in
 * the exchange; instead of gathering those heads of every member's tokens into a head-side copy,
 * it runs the attention kernels on the members' own sequence-side tensors [B, T, H|G, D]
 * (AttnBlockDims.groups), query block p against key block s for every pair of members, writing
 * its heads of their out, lse (forward) and dq, dk, dv (backward) in place. Every byte the
 * exchange copied twice (out of one tensor into another, then into the kernel's tiles) is read
 * once, by the kernel's own packing; a step's 9 exchanges per layer become 4 barriers.
 *
 * Needs kv heads split over the group (G % P == 0): replicated kv heads would have two ranks
 * summing into the same dk rows. Every buffer of a call must be one the group can share
 * (allocBuffer on threads, the model's AttentionOp.ioAlloc); callers check with `usable`.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttnDims } from './types.js';
import { blockDims, maskPositions } from './local.js';
import type { Scratch } from './util.js';

type Peers = ProcessGroup & Required<Pick<ProcessGroup, 'peerBuffers' | 'sharesBuffer'>>;

/** Whether `group` can map its members' buffers at all. */
export function canShare(group: ProcessGroup): group is Peers {
  return typeof group.peerBuffers === 'function' && typeof group.sharesBuffer === 'function';
}

/**
 * Whether (query block p, key block s) has any allowed pair under the causal flag and a left
 * window (mask positions: padding −1 has none); a pair with none is not run at all.
 */
function anyAllowed(q: Int32Array, k: Int32Array, causal: boolean, windowLeft: number | undefined): boolean {
  let qMin = Infinity, qMax = -Infinity, kMin = Infinity, kMax = -Infinity;
  for (const p of q) if (p >= 0) (qMin = Math.min(qMin, p)), (qMax = Math.max(qMax, p));
  for (const p of k) if (p >= 0) (kMin = Math.min(kMin, p)), (kMax = Math.max(kMax, p));
  if (qMin > qMax || kMin > kMax) return false;
  if (causal && kMin > qMax) return false;
  if (windowLeft !== undefined && kMax < qMin - windowLeft) return false;
  return true;
}

export function ulyssesShared(group: Peers, kernels: Kernels, memberPositions: readonly Int32Array[], scratch: Scratch) {
  const P = group.size;
  const r = group.rank;
  // Every member's view of each shared tensor, mapped on first use (a collective: all ranks meet
  // the same buffers in the same order) and kept: the model's tensors live as long as the op.
  const views = new WeakMap<Buf, Buf[]>();
  const peersOf = async (b: Buf): Promise<Buf[]> => {
    let v = views.get(b);
    if (!v) views.set(b, (v = (await group.peerBuffers(b)) as Buf[]));
    return v;
  };
  const all = async (bs: Buf[]) => {
    const out: Buf[][] = [];
    for (const b of bs) out.push(await peersOf(b));
    return out;
  };
  const plan = (d: AttnDims) => {
    const mp = memberPositions.map((p) => maskPositions(p, d));
    const bd = blockDims(d, d.T, d.T);
    const per = d.G / P;
    const dims = { ...bd, groups: { from: r * per, to: (r + 1) * per } };
    // Our own block against itself needs nothing of the peers': it runs before the first barrier,
    // so a rank that gets there first computes instead of waiting. Then query blocks from our own
    // on, so that the members work on different blocks' tensors (no two ranks on the same out,
    // lse, dq cache lines at once).
    const own = anyAllowed(mp[r]!, mp[r]!, bd.mask.causal, bd.mask.windowLeft);
    const pairs: [number, number][] = [];
    for (let j = 0; j < P; j++) {
      const p = (r + j) % P;
      for (let s = 0; s < P; s++) if (!(p === r && s === r) && anyAllowed(mp[p]!, mp[s]!, bd.mask.causal, bd.mask.windowLeft)) pairs.push([p, s]);
    }
    return { mp, dims, own, pairs };
  };

  return {
    /** Whether this path can run a call on these buffers (the same answer on every rank for the model's tensors). */
    usable(d: AttnDims, bufs: Buf[]): boolean {
      return d.G % P === 0 && bufs.every((b) => group.sharesBuffer(b));
    },

    async forward(o: { out: Buf; lse: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims): Promise<void> {
      const [q, k, v, out, lse] = await all([i.q, i.k, i.v, o.out, o.lse]);
      const { mp, dims, own, pairs } = plan(d);
      // Our tensors start from the empty state; the peers fold their heads into them after the barrier.
      o.out.fill(0);
      o.lse.fill(-Infinity);
      if (own) kernels.attnForward({ out: o.out, lse: o.lse }, { q: i.q, k: i.k, v: i.v, qPos: mp[r]!, kPos: mp[r]! }, dims);
      await group.barrier(); // every member's q, k, v written, out and lse reset
      // query block p folds key blocks s in member order into p's running (out, lse): our heads
      for (const [p, s] of pairs) kernels.attnForward({ out: out[p]!, lse: lse[p]! }, { q: q[p]!, k: k[s]!, v: v[s]!, qPos: mp[p]!, kPos: mp[s]! }, dims);
      await group.barrier(); // every head of every member's out, lse final
    },

    /** Accumulates into dq, dk, dv (as the exchange's backward does). */
    async backward(g: { dq: Buf; dk: Buf; dv: Buf }, i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf }, d: AttnDims): Promise<void> {
      // delta = rowsum(dOut ∘ out) of our own tokens, every head [B, T, H]: read by the members
      // that own the heads
      const delta = scratch.alloc(i.out, d.B * d.T * d.H);
      kernels.attnDelta({ delta }, { dOut: i.dOut, out: i.out }, { B: d.B, T: d.T, H: d.H, D: d.D });
      const [dOut, q, k, v, out, lse, dl, dq, dk, dv] = await all([i.dOut, i.q, i.k, i.v, i.out, i.lse, delta, g.dq, g.dk, g.dv]);
      const { mp, dims, own, pairs } = plan(d);
      if (own) {
        const i2 = { ...i, delta, qPos: mp[r]!, kPos: mp[r]! };
        kernels.attnBackward(g, i2, dims);
      }
      await group.barrier(); // every member's dOut and delta written
      for (const [p, s] of pairs) {
        kernels.attnBackward(
          { dq: dq[p]!, dk: dk[s]!, dv: dv[s]! },
          { dOut: dOut[p]!, q: q[p]!, k: k[s]!, v: v[s]!, out: out[p]!, lse: lse[p]!, delta: dl[p]!, qPos: mp[p]!, kPos: mp[s]! },
          dims,
        );
      }
      await group.barrier(); // every member's dq, dk, dv final
    },
  };
}
