/**
 * Ulysses without the all-to-alls, for ranks that share an address space (threads, inproc: the
 * group's peerBuffers). Instead of gathering heads of every member's tokens into a head-side
 * copy, the ranks run the attention kernels on the members' own sequence-side tensors
 * [B, T, H|G, D], one chunk of heads at a time (AttnBlockDims.heads), writing that chunk's
 * heads of the members' out, lse (forward) and dq, dk, dv (backward) in place. Every byte the
 * exchange copied twice (out of one tensor into another, then into the kernel's tiles) is read
 * once, by the kernel's own packing; a step's 9 exchanges per layer become 4 barriers.
 *
 * Heads go in K = max(G, P) chunks of H/K: one kv group each when the kv heads split over the
 * group (G % P == 0), and P/G chunks of each group's query heads when they would be replicated
 * (P % G == 0, where the exchange sends every rank a copy of its kv head and sums the copies'
 * dk, dv). Which rank computes what is not fixed: the work items (forward: one chunk of one query
 * block against every key block; backward: one chunk over all block pairs, since its dk, dv rows
 * take sums from every query block) are claimed from a shared counter, largest first, so a rank
 * whose core runs slower (a busy neighbour) takes fewer of them instead of making the others
 * wait. Chunks that share a kv group write its dk, dv terms apart: the first into dk, dv, the
 * others into one partial buffer each per member, which its owner adds in order after the last
 * barrier. Every item is one fixed sequence of kernel calls on the same inputs, whichever rank
 * runs it, so the results do not depend on the schedule, bit for bit.
 *
 * So it runs every head split Ulysses accepts (ulyssesSplits checks it). Every buffer of a call
 * must be one the group can share (allocBuffer on threads, the model's AttentionOp.ioAlloc);
 * callers check with `usable`.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttnDims } from './types.js';
import { blockDims, maskPositions } from './local.js';
import { attendsAny, sortedKeys } from './layout.js';
import type { Scratch } from './util.js';

type Peers = ProcessGroup & Required<Pick<ProcessGroup, 'peerBuffers' | 'sharesBuffer'>>;

/** Whether `group` can map its members' buffers at all. */
export function canShare(group: ProcessGroup): group is Peers {
  return typeof group.peerBuffers === 'function' && typeof group.sharesBuffer === 'function';
}

export function ulyssesShared(group: Peers, kernels: Kernels, memberPositions: readonly Int32Array[], scratch: Scratch) {
  const P = group.size;
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
  // The work counter: member 0's, mapped by everyone. It only grows: a call with n items hands
  // out tickets [base, base + n) and each rank's last, failed claim takes one more, so the next
  // call starts at base + n + P on every rank without a reset.
  let ticketBase = 0;
  let counter: Int32Array | null = null;
  const items = async (n: number): Promise<() => number> => {
    if (!counter) counter = (await group.peerBuffers(group.allocBuffer('int32', 1)))[0] as Int32Array;
    const c = counter;
    const base = ticketBase;
    ticketBase += n + P;
    return () => {
      const t = Atomics.add(c, 0, 1) - base;
      return t < n ? t : -1;
    };
  };
  const plan = (d: AttnDims) => {
    const mp = memberPositions.map((p) => maskPositions(p, d));
    const bd = blockDims(d, d.T, d.T);
    // (query block p, key block s) pairs with no allowed key are not run at all (the window on
    // the mask positions, which keep documents apart, is blockDims')
    const keys = mp.map(sortedKeys);
    const allowed = (p: number, s: number) => attendsAny(mp[p]!, keys[s]!, bd.mask.causal, bd.mask.windowLeft);
    // K chunks of H/K query heads, each within one kv group; chunk k is its group's copy k % (K/G)
    const K = Math.max(d.G, P);
    const chunk = (k: number) => ({ ...bd, heads: { from: (k * d.H) / K, to: ((k + 1) * d.H) / K } });
    // forward items, largest first: query blocks with the most allowed key blocks first
    const work = (p: number) => memberPositions.reduce((n, _, s) => n + (allowed(p, s) ? 1 : 0), 0);
    const blocks = Array.from({ length: P }, (_, p) => p).sort((a, b) => work(b) - work(a) || a - b);
    return { mp, allowed, K, copies: K / d.G, chunk, blocks };
  };
  return {
    /** Whether this path can run a call on these buffers (the same answer on every rank for the model's tensors). */
    usable(bufs: Buf[]): boolean {
      return bufs.every((b) => group.sharesBuffer(b));
    },

    async forward(o: { out: Buf; lse: Buf }, i: { q: Buf; k: Buf; v: Buf }, d: AttnDims): Promise<void> {
      const [q, k, v, out, lse] = await all([i.q, i.k, i.v, o.out, o.lse]);
      const { mp, allowed, K, chunk, blocks } = plan(d);
      const next = await items(K * P);
      // Our tensors start from the empty state; the ranks fold their heads into them after the barrier.
      o.out.fill(0);
      o.lse.fill(-Infinity);
      await group.barrier(); // every member's q, k, v written, out and lse reset
      // item t: head chunk t % K of query block blocks[t / K], key blocks in member order
      for (let t = next(); t >= 0; t = next()) {
        const p = blocks[Math.floor(t / K)]!;
        const dims = chunk(t % K);
        for (let s = 0; s < P; s++) if (allowed(p, s)) kernels.attnForward({ out: out[p]!, lse: lse[p]! }, { q: q[p]!, k: k[s]!, v: v[s]!, qPos: mp[p]!, kPos: mp[s]! }, dims);
      }
      await group.barrier(); // every head of every member's out, lse final
    },

    /** Accumulates into dq, dk, dv (as the exchange's backward does). */
    async backward(g: { dq: Buf; dk: Buf; dv: Buf }, i: { dOut: Buf; q: Buf; k: Buf; v: Buf; out: Buf; lse: Buf }, d: AttnDims): Promise<void> {
      // delta = rowsum(dOut ∘ out) of our own tokens, every head [B, T, H]: read by whichever
      // rank runs a head
      const delta = scratch.alloc(i.out, d.B * d.T * d.H);
      kernels.attnDelta({ delta }, { dOut: i.dOut, out: i.out }, { B: d.B, T: d.T, H: d.H, D: d.D });
      const [dOut, q, k, v, out, lse, dl, dq, dk, dv] = await all([i.dOut, i.q, i.k, i.v, i.out, i.lse, delta, g.dq, g.dk, g.dv]);
      const { mp, allowed, K, copies, chunk } = plan(d);
      // dk, dv terms of a kv group's copies 1 .. copies-1 (copy 0 adds into dk, dv): a pair of
      // [B, T, G, D] buffers per copy and member, zeroed by their owner
      const nkv = d.B * d.T * d.G * d.D;
      const own = Array.from({ length: 2 * (copies - 1) }, () => scratch.alloc(g.dk, nkv).fill(0));
      const part = await all(own);
      const next = await items(K);
      await group.barrier(); // every member's dOut and delta written, partials zeroed (and dq, dk, dv zeroed by the model)
      // item t: head chunk t over every allowed (query block p, key block s), in a fixed order;
      // copy j > 0 of a kv group sums its dk, dv terms into partial pair j - 1
      for (let t = next(); t >= 0; t = next()) {
        const dims = chunk(t);
        const j = t % copies;
        const [dkT, dvT] = j === 0 ? [dk, dv] : [part[2 * (j - 1)]!, part[2 * j - 1]!];
        for (let p = 0; p < P; p++) {
          for (let s = 0; s < P; s++) {
            if (!allowed(p, s)) continue;
            kernels.attnBackward(
              { dq: dq[p]!, dk: dkT[s]!, dv: dvT[s]! },
              { dOut: dOut[p]!, q: q[p]!, k: k[s]!, v: v[s]!, out: out[p]!, lse: lse[p]!, delta: dl[p]!, qPos: mp[p]!, kPos: mp[s]! },
              dims,
            );
          }
        }
      }
      await group.barrier(); // every member's dq final, its dk, dv and partials written
      // our rows' dk, dv: the copies' terms in copy order (the same sums whoever ran them)
      for (let j = 1; j < copies; j++) {
        kernels.axpy(g.dk.subarray(0, nkv), own[2 * (j - 1)]!, 1);
        kernels.axpy(g.dv.subarray(0, nkv), own[2 * j - 1]!, 1);
      }
    },
  };
}
