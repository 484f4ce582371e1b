/**
 * The ring loop shared by plain (contiguous) ring attention, zigzag and stripe (algorithms.md §2).
 * Each rank keeps its queries; key/value blocks travel r → r+1, so at step s rank r holds the block
 * of rank j = (r − s) mod P and folds it into its running (out, lse) with the kernel, which masks by
 * GLOBAL positions. The variants differ only in the layout (which positions a rank holds, cut into
 * equal chunks) and in the tile rule (which (query chunk, key chunk) tiles can hold an allowed pair;
 * the others are skipped without a kernel call).
 *
 * Backward: the kv blocks travel again. The owner's own dK/dV contribution stays home; the
 * accumulator of block j starts at rank j+1, collects every other rank's contribution as it moves,
 * and reaches the owner after P−1 hops (TransformerEngine's schedule; ring_flash_attn starts it at
 * the owner and needs P hops, algorithms.md C5).
 *
 * Sliding windows (AttnDims.window): the ring runs only the steps that carry an allowed pair for
 * some rank (ringSteps; with the contiguous layout and a window within one block, 2 of P), and the
 * last accumulator hop goes straight to its owner instead of around the rest of the ring.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttentionOp, AttnDims, SeqLayout } from './types.js';
import type { ChunkedLayout } from './layout.js';
import { attendsAny, contiguousLayout, padLayout, sortedKeys, stripeLayout, zigzagLayout } from './layout.js';
import { blockDims, checkShapes, maskPositions, type InnerAttention } from './local.js';
import { Scratch, chunkPositions, chunkViews, joinChunks, packChunks, splitChunks } from './util.js';

export type RingKind = 'ring' | 'zigzag' | 'stripe';

/**
 * Causal tile rule: may query chunk qc of rank r see anything of key chunk kc of rank j?
 * (Non-causal attention computes every tile.)
 */
export type TileRule = (r: number, j: number, qc: number, kc: number) => boolean;

export const tileRules: Record<RingKind, TileRule> = {
  // Contiguous blocks: earlier ranks' blocks are entirely visible, later ones entirely future.
  ring: (r, j) => j <= r,
  // Zigzag (§2.3): rank r holds [c_r, c_{2P−1−r}]. Own block: all but (early q, late k). An
  // earlier rank's block: only its early chunk c_j (c_{2P−1−j} is after both of ours). A later
  // rank's block: only our late chunk sees it, and sees both of its chunks.
  zigzag: (r, j, qc, kc) => (j === r ? !(qc === 0 && kc === 1) : j < r ? kc === 0 : qc === 1),
  // Stripe (§2.4): every step has visible pairs (j > r only loses one row: key b needs b ≤ a−1,
  // which the kernel's position mask applies).
  stripe: () => true,
};

/**
 * Ring steps that can carry an allowed (query, key) pair: 1 + the largest s for which some rank r's
 * queries may attend a key of rank (r − s) mod P, judged on the layout's positions (padding, −1,
 * attends nothing) under the causal flag and the window. Without a window every step may (P).
 */
export function ringSteps(layout: SeqLayout, causal: boolean, window?: number): number {
  const P = layout.P;
  if (window === undefined || P === 1) return P;
  const keys = Array.from({ length: P }, (_, j) => sortedKeys(layout.positions(j)));
  let last = 0;
  for (let r = 0; r < P; r++) {
    const qs = layout.positions(r);
    for (let s = P - 1; s > last; s--) {
      if (attendsAny(qs, keys[(r - s + P) % P]!, causal, window)) {
        last = s;
        break;
      }
    }
  }
  return last + 1;
}

export function ringLayout(kind: RingKind, S: number, P: number): ChunkedLayout {
  return kind === 'zigzag' ? zigzagLayout(S, P) : kind === 'stripe' ? stripeLayout(S, P) : contiguousLayout(S, P, 'ring');
}

export interface RingOptions {
  /** Start each transfer before the block compute and await it after (default true); false awaits first (C3 tests). */
  overlap?: boolean;
  /** Real tokens of a padded sequence (default S): positions ≥ realS are padding (layout.ts padLayout). */
  realS?: number;
}

/** The ring over `group` as an InnerAttention: `pos` must be layout.positions(group.rank). */
export function ringInner(group: ProcessGroup, kernels: Kernels, layout: ChunkedLayout, rule: TileRule, scratch: Scratch, opts: RingOptions = {}): InnerAttention {
  const P = group.size;
  const r = group.rank;
  const c = layout.chunks;
  const overlap = opts.overlap ?? true;
  if (layout.P !== P) throw new Error(`ring: layout for sp=${layout.P} on a group of ${P}`);
  const pos = Array.from({ length: P }, (_, j) => chunkPositions(layout.positions(j), c));
  const posAll = Array.from({ length: P }, (_, j) => layout.positions(j));
  const next = (r + 1) % P;
  const prev = (r - 1 + P) % P;
  const tileOn = (causal: boolean, j: number, qc: number, kc: number) => !causal || rule(r, j, qc, kc);
  // Steps per (causal, window), the same on every rank (from the layout alone).
  const stepMemo = new Map<string, number>();
  const stepsOf = (d: AttnDims): number => {
    const key = `${d.causal}/${d.window}`;
    let n = stepMemo.get(key);
    if (n === undefined) stepMemo.set(key, (n = ringSteps(layout, d.causal, d.window)));
    return n;
  };
  /**
   * The kernel calls of step j, as chunk ranges [q0, q1) × [k0, k1). When chunks are views of one
   * buffer (`merge`: B = 1 or c = 1) the visible tiles go in ONE call over their bounding
   * rectangle: the tiles it adds are ones the rule proved hold no allowed pair, and the kernel's
   * own position-range tile test skips each of their sub-tiles without computing it (chunks are
   * multiples of its tiles in the usual case). Fewer, larger calls: zigzag's own block is one
   * 2-chunk × 2-chunk call instead of three 1 × 1 ones.
   */
  const tileCalls = (causal: boolean, j: number, merge: boolean): [number, number, number, number][] => {
    const on: [number, number][] = [];
    for (let qc = 0; qc < c; qc++) for (let kc = 0; kc < c; kc++) if (tileOn(causal, j, qc, kc)) on.push([qc, kc]);
    if (merge && on.length > 0) {
      const qs = on.map((t) => t[0]);
      const ks = on.map((t) => t[1]);
      return [[Math.min(...qs), Math.max(...qs) + 1, Math.min(...ks), Math.max(...ks) + 1]];
    }
    return on.map(([qc, kc]) => [qc, qc + 1, kc, kc + 1]);
  };
  /** Chunks [a, b) of a chunked tensor: chunk a itself, or (merged calls, B = 1) a view of `whole`. */
  const span = (chunks: readonly Buf[], whole: Buf, a: number, b: number): Buf => {
    if (b - a === 1) return chunks[a]!;
    const m = whole.length / c;
    return whole.subarray(a * m, b * m);
  };
  const posSpan = (j: number, a: number, b: number): Int32Array => (b - a === 1 ? pos[j]![a]! : posAll[j]!.subarray((a * posAll[j]!.length) / c, (b * posAll[j]!.length) / c));
  const checkPos = (p: Int32Array) => {
    const mine = layout.positions(r);
    if (p.length !== mine.length || p.some((x, i) => x !== mine[i])) throw new Error(`ring: rank ${r} given positions that are not its layout's`);
  };

  /**
   * [B, T, G, D] k, v -pack-> [k | v] with each chunk contiguous: [2][c][B, T/c, G, D]. With B = 1
   * (or c = 1) chunks are already contiguous, so this is two plain copies.
   */
  const packKV = (k: Buf, v: Buf, d: AttnDims): Buf => {
    const n = d.B * d.T * d.G * d.D;
    const kv = scratch.alloc(k, 2 * n);
    packChunks(kv, 0, k, d.B, d.T, d.G * d.D, c);
    packChunks(kv, n, v, d.B, d.T, d.G * d.D, c);
    return kv;
  };
  /**
   * The k|v blocks a ring pass holds, [2][c][B, T/c, G, D] each: ours, then each arrival. Ours is
   * the caller's k and v in place when they are the adjacent halves of one buffer and chunks are
   * contiguous (the model allocates them so: no pack copy before the first send); arrivals then
   * alternate between two scratch buffers (one at P = 2) and never land in the caller's k, v.
   * Otherwise ours is packed into scratch and two buffers swap. `advance` moves to the arrival.
   */
  const kvRing = (k: Buf, v: Buf, d: AttnDims) => {
    const n = d.B * d.T * d.G * d.D;
    const inPlace = (d.B === 1 || c === 1) && k.buffer === v.buffer && k.length === n && v.length === n && v.byteOffset === k.byteOffset + k.byteLength;
    const own = inPlace ? new (k.constructor as Float32ArrayConstructor)(k.buffer, k.byteOffset, 2 * n) : packKV(k, v, d);
    let cur: Buf = own;
    let nxt: Buf | null = scratch.alloc(own, 2 * n);
    let spare: Buf | null = inPlace && P > 2 ? scratch.alloc(own, 2 * n) : null;
    return {
      get cur(): Buf {
        return cur;
      },
      get nxt(): Buf {
        return nxt!;
      },
      advance(): void {
        if (cur === own && inPlace) [cur, nxt, spare] = [nxt!, spare, null];
        else [cur, nxt] = [nxt!, cur];
      },
    };
  };
  /** y += x (bitwise the same as y[i] + x[i]: a = 1 makes the fma exact before its one rounding). */
  const add = (y: Buf, x: Buf) => kernels.axpy(y, x, 1);
  /** Views of chunks [k0, k1) of the k and v halves of a packed [2][c][B, T/c, G, D] buffer. */
  const kvChunk = (kv: Buf, k0: number, k1: number, n: number): [Buf, Buf] => {
    const m = n / c;
    return [kv.subarray(k0 * m, k1 * m), kv.subarray(n + k0 * m, n + k1 * m)];
  };

  return {
    async forward(o, i, d, p) {
      checkPos(p);
      const { B, T, H, D } = d;
      const Tc = T / c;
      const n = B * T * d.G * D;
      const merge = B === 1 || c === 1;
      // Chunks are views of q, out, lse when contiguous (B = 1 or c = 1): computed in place.
      const qC = splitChunks(i.q, B, T, H * D, c, scratch);
      const outC = chunkViews(o.out, B, T, H * D, c) ?? qC.map(() => scratch.alloc(o.out, B * Tc * H * D));
      const lseC = chunkViews(o.lse, B, T, H, c) ?? qC.map(() => scratch.alloc(o.lse, B * Tc * H));
      for (const x of outC) x.fill(0);
      for (const x of lseC) x.fill(-Infinity);
      const kv = kvRing(i.k, i.v, d);
      const nS = stepsOf(d);
      for (let s = 0; s < nS; s++) {
        const j = (r - s + P) % P;
        const cur = kv.cur;
        // [2, B, T, G, D] k|v of rank j -sendRecv(ring: to r+1, from r−1)-> k|v of rank j−1, while we compute on j.
        let pending = s < nS - 1 ? group.sendRecv(cur, next, kv.nxt, prev) : null;
        if (pending && !overlap) {
          await pending;
          pending = null;
        }
        for (const [q0, q1, k0, k1] of tileCalls(d.causal, j, merge)) {
          const [k, v] = kvChunk(cur, k0, k1, n);
          kernels.attnForward(
            { out: span(outC, o.out, q0, q1), lse: span(lseC, o.lse, q0, q1) },
            { q: span(qC, i.q, q0, q1), k, v, qPos: maskPositions(posSpan(r, q0, q1), d), kPos: maskPositions(posSpan(j, k0, k1), d) },
            blockDims(d, (q1 - q0) * Tc, (k1 - k0) * Tc),
          );
        }
        if (s < nS - 1) {
          if (pending) await pending;
          kv.advance();
        }
      }
      // c × [B, T/c, H, D] -join-> [B, T, H, D] (no-op for views: computed in place).
      joinChunks(o.out, outC, B, T, H * D, false);
      joinChunks(o.lse, lseC, B, T, H, false);
    },

    async backward(g, i, d, p) {
      checkPos(p);
      const { B, T, H, D } = d;
      const Tc = T / c;
      const n = B * T * d.G * D;
      const merge = B === 1 || c === 1;
      const delta = scratch.alloc(i.out, B * T * H);
      kernels.attnDelta({ delta }, { dOut: i.dOut, out: i.out }, { B, T, H, D });
      const qC = splitChunks(i.q, B, T, H * D, c, scratch);
      const dOutC = splitChunks(i.dOut, B, T, H * D, c, scratch);
      const outC = splitChunks(i.out, B, T, H * D, c, scratch);
      const lseC = splitChunks(i.lse, B, T, H, c, scratch);
      const deltaC = splitChunks(delta, B, T, H, c, scratch);
      // dq accumulates in place when its chunks are views; per chunk otherwise (zeroed), added at the end.
      const dqV = chunkViews(g.dq, B, T, H * D, c);
      const dqC = dqV ?? qC.map(() => scratch.alloc(g.dq, B * Tc * H * D).fill(0));
      const kv = kvRing(i.k, i.v, d);
      const like = kv.cur;
      // dK|dV of our own block stays home (step 0 computes it there). The accumulator of block j
      // starts at rank j + 1, the first other rank to see it, collects one contribution per hop and
      // reaches its owner after P − 1 hops, where it is added to the home part: P − 1 transfers of
      // dK|dV per backward, not P. Double-buffered (one in flight, one received), packed like kv;
      // `local` is a step's contribution while the arriving accumulator is still in flight.
      // Home is dk, dv themselves when chunks are contiguous (B = 1 or c = 1: the packed k and v
      // halves have their layout, and the kernel accumulates), a packed buffer joined at the end otherwise.
      const home = merge ? null : scratch.alloc(like, 2 * n).fill(0);
      const homeChunk = (k0: number, k1: number): [Buf, Buf] => (home ? kvChunk(home, k0, k1, n) : [g.dk.subarray((k0 * n) / c, (k1 * n) / c), g.dv.subarray((k0 * n) / c, (k1 * n) / c)]);
      const acc = P > 1 ? [scratch.alloc(like, 2 * n), scratch.alloc(like, 2 * n)] : [];
      const local = P > 2 ? scratch.alloc(like, 2 * n) : null;
      let ai = 0;
      let accPending: Promise<void> | null = null;
      const nS = stepsOf(d);
      for (let s = 0; s < nS; s++) {
        const j = (r - s + P) % P;
        const cur = kv.cur;
        // [2, B, T, G, D] k|v -sendRecv(ring: to r+1, from r−1)-> next block, overlapped with this step.
        let pending = s < nS - 1 ? group.sendRecv(cur, next, kv.nxt, prev) : null;
        if (pending && !overlap) {
          await pending;
          pending = null;
        }
        // s = 0: home; s = 1: a fresh accumulator (nothing to add yet); s >= 2: `local`, added
        // to the accumulator that arrives from r − 1 meanwhile.
        const target = s === 0 ? null : s === 1 ? acc[ai]!.fill(0) : local!.fill(0);
        for (const [q0, q1, k0, k1] of tileCalls(d.causal, j, merge)) {
          const [k, v] = kvChunk(cur, k0, k1, n);
          const [dk, dv] = target ? kvChunk(target, k0, k1, n) : homeChunk(k0, k1);
          const q = (x: Buf[], whole: Buf) => span(x, whole, q0, q1);
          kernels.attnBackward(
            { dq: q(dqC, g.dq), dk, dv },
            { dOut: q(dOutC, i.dOut), q: q(qC, i.q), k, v, out: q(outC, i.out), lse: q(lseC, i.lse), delta: q(deltaC, delta), qPos: maskPositions(posSpan(r, q0, q1), d), kPos: maskPositions(posSpan(j, k0, k1), d) },
            blockDims(d, (q1 - q0) * Tc, (k1 - k0) * Tc),
          );
        }
        if (s >= 2) {
          // The accumulator of block j arrived from r−1 during this step's compute: add ours.
          await accPending;
          add(acc[ai]!, local!);
        }
        if (s >= 1) {
          // [2, B, T, G, D] dK|dV of block j -sendRecv(ring: to r+1, from r−1)-> accumulator of block j−1;
          // at the last step straight to block j's owner r − s (r + 1 when the ring runs all P
          // steps), and ours arrives from r + s.
          const lastStep = s === nS - 1;
          accPending = group.sendRecv(acc[ai]!, lastStep ? j : next, acc[1 - ai]!, lastStep ? (r + s) % P : prev);
          ai = 1 - ai;
          if (!overlap) {
            await accPending;
            accPending = null;
          }
        }
        if (s < nS - 1) {
          if (pending) await pending;
          kv.advance();
        }
      }
      // The accumulator that arrives last is our own block's, from ranks r + 1 .. r + nS − 1.
      if (accPending) await accPending;
      if (home) {
        if (nS > 1) add(home, acc[ai]!);
        // [2][c][B, T/c, G, D] -join-> [B, T, G, D] dk, dv (+=)
        const m = n / c;
        joinChunks(g.dk, Array.from({ length: c }, (_, kc) => home.subarray(kc * m, (kc + 1) * m)), B, T, d.G * D, true);
        joinChunks(g.dv, Array.from({ length: c }, (_, kc) => home.subarray(n + kc * m, n + (kc + 1) * m)), B, T, d.G * D, true);
      } else if (nS > 1) {
        add(g.dk, acc[ai]!.subarray(0, n));
        add(g.dv, acc[ai]!.subarray(n, 2 * n));
      }
      if (!dqV) joinChunks(g.dq, dqC, B, T, H * D, true);
    },
  };
}

/** Ring attention of `kind` over the sp group, as the AttentionOp the model calls. */
export function createRingAttention(
  kind: RingKind,
  group: ProcessGroup,
  kernels: Kernels,
  S: number,
  opts: RingOptions = {},
): AttentionOp & { readonly scratch: Scratch; readonly positions: Int32Array } {
  const layout = padLayout(ringLayout(kind, S, group.size), opts.realS ?? S);
  const scratch = new Scratch(group);
  const inner = ringInner(group, kernels, layout, tileRules[kind], scratch, opts);
  const positions = layout.positions(group.rank);
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T !== layout.T) throw new Error(`${kind}: dims S=${d.S} T=${d.T} but op built for S=${S}, sp=${group.size} (T=${layout.T})`);
    if (d.H % d.G !== 0) throw new Error(`${kind}: heads H=${d.H} not divisible by kv heads G=${d.G}`);
  };
  return {
    name: kind,
    layout,
    scratch,
    positions,
    async forward(o, i, d) {
      check(d);
      checkShapes(kind, d, { ...o, ...i });
      scratch.begin();
      await inner.forward(o, i, d, positions);
    },
    async backward(g, i, d) {
      check(d);
      checkShapes(kind, d, { ...g, ...i });
      scratch.begin();
      await inner.backward(g, i, d, positions);
    },
  };
}
