/**
 * Sequence-parallel attention: the factory, layouts per scheme, validation and the cost model.
 *
 * Decisions (see also the scheme files):
 * - zigzag and stripe accept non-causal attention (exact, just no reason to reorder); USP needs it.
 * - zigzag works for any P, odd included, as long as S % 2P == 0.
 * - ops keep nothing between forward and backward; what backward reuses travels in the caller's
 *   `saved` slot (AttentionOp.savedElements): Ulysses and hybrid put their head-side q, k, v, out,
 *   lse there and backward exchanges only dOut.
 * - cost(): bytes are computed call by call with the comm layer's own `sentBytes`, in the order
 *   the op makes the calls, so they equal the CommLog totals exactly (fwd + bwd, per axis).
 */
import type { Kernels } from '../kernels/types.js';
import type { CommRecord, ProcessGroup } from '../comm/types.js';
import { sentBytes } from '../comm/log.js';
import type { AttentionOp, AttnCost, AttnDims, SchemeName } from './types.js';
import { allowedPairs, contiguousLayout, hybridLayout, padLayout, stripeLayout, zigzagLayout, type ChunkedLayout } from './layout.js';
import { createLocalAttention } from './local.js';
import { createRingAttention, ringLayout, ringSteps } from './ring.js';
import { createUlyssesAttention, ulyssesSavedSizes, ulyssesSplits } from './ulysses.js';
import { allgatherLayout, createAllGatherAttention, type AllGatherLayout } from './allgather.js';
import { createRsaAttention } from './rsa.js';
import { createHybridAttention } from './hybrid.js';
import type { Scratch } from './util.js';

export * from './layout.js';
export { createLocalAttention } from './local.js';
export { createRingAttention, ringLayout, ringSteps, tileRules, type RingKind, type TileRule } from './ring.js';
export { createUlyssesAttention } from './ulysses.js';
export { createAllGatherAttention } from './allgather.js';
export { createRsaAttention } from './rsa.js';
export { createHybridAttention } from './hybrid.js';
export { Scratch } from './util.js';

export const SCHEMES: readonly SchemeName[] = ['local', 'ulysses', 'ring', 'zigzag', 'stripe', 'rsa', 'allgather', 'hybrid'];

/** Groups a scheme runs over: `sp` for single-axis schemes, `ulysses` and `ring` for hybrid. */
export interface SpGroups {
  sp?: ProcessGroup;
  ulysses?: ProcessGroup;
  ring?: ProcessGroup;
}

export interface AttentionOptions {
  /** Global sequence length (with padding, the padded length). */
  S: number;
  /**
   * Real tokens when the sequence is padded to S (default S): positions ≥ realS are padding
   * (layout.ts padLayout), which the data loader gives no targets and attention never sees.
   */
  realS?: number;
  /** Ring schemes: start transfers before compute (default true); false = synchronous. */
  overlap?: boolean;
  /** allgather: token layout (default auto: zigzag when S % 2P == 0, else contiguous). */
  allgatherLayout?: AllGatherLayout;
  /**
   * ulysses: run the kernels on the members' tensors in place where the transport shares memory
   * (threads, inproc) and the tensors come from the op's ioAlloc, instead of exchanging heads
   * (ulysses-shared.ts). Default false.
   */
  shared?: boolean;
}

/** An AttentionOp plus what the trainer and benchmarks need: this rank's positions and scratch stats. */
export type SpAttention = AttentionOp & { readonly positions: Int32Array; readonly scratch: Scratch };

/** Layout of a scheme over P ranks (hybrid: P = ulysses · ring, `ulysses` required). */
export function layoutFor(scheme: SchemeName, S: number, P: number, opts: { ulysses?: number; allgatherLayout?: AllGatherLayout } = {}): ChunkedLayout {
  switch (scheme) {
    case 'local':
      if (P !== 1) throw new Error(`local: sp=${P}, expected 1`);
      return contiguousLayout(S, 1, 'local');
    case 'zigzag':
      return zigzagLayout(S, P);
    case 'stripe':
      return stripeLayout(S, P);
    case 'allgather':
      return allgatherLayout(S, P, opts.allgatherLayout);
    case 'hybrid': {
      const u = opts.ulysses;
      if (u === undefined || !Number.isInteger(u) || u < 1 || P % u !== 0) throw new Error(`hybrid: ulysses=${u} must be a positive divisor of sp=${P}`);
      return hybridLayout(S, u, P / u);
    }
    case 'ulysses':
    case 'ring':
    case 'rsa':
      return contiguousLayout(S, P, scheme);
    default:
      throw new Error(`unknown scheme '${String(scheme)}' (one of ${SCHEMES.join(', ')})`);
  }
}

/**
 * The shortest length ≥ S that the scheme's layout splits over P ranks (S itself when it does):
 * a multiple of P, of 2P (zigzag), or of lcm(2·ring, sp) (hybrid). Errors other than divisibility
 * (a bad ulysses size, say) are thrown as layoutFor throws them.
 */
export function paddedLength(scheme: SchemeName, S: number, P: number, opts: { ulysses?: number; allgatherLayout?: AllGatherLayout } = {}): number {
  if (!Number.isInteger(S) || S < 1) layoutFor(scheme, S, P, opts);  // throws naming S
  // Every layout's period is at most 2·sp (zigzag 2·sp; hybrid lcm(2·ring, ulysses·ring) ≤ 2·sp).
  for (let s = S; s <= S + 2 * P; s++) {
    try {
      layoutFor(scheme, s, P, opts);
      return s;
    } catch {
      // not a length this layout splits; try the next
    }
  }
  layoutFor(scheme, S, P, opts);
  return S;
}

export interface SchemeConfig {
  S: number;
  P: number;
  H: number;
  G: number;
  /** hybrid only: size of the ulysses axis (ring = P / ulysses). */
  ulysses?: number;
  allgatherLayout?: AllGatherLayout;
}

/** Throws a one-line error when the scheme cannot run this configuration exactly. */
export function validateScheme(scheme: SchemeName, c: SchemeConfig): void {
  if (!Number.isInteger(c.H) || !Number.isInteger(c.G) || c.H < 1 || c.G < 1 || c.H % c.G !== 0) {
    throw new Error(`${scheme}: heads H=${c.H} not divisible by kv heads G=${c.G}`);
  }
  layoutFor(scheme, c.S, c.P, c);
  if (scheme === 'ulysses') ulyssesSplits('ulysses', c.H, c.G, c.P);
  if (scheme === 'hybrid') ulyssesSplits('hybrid', c.H, c.G, c.ulysses!, 'ulysses');
}

/** Builds the op for this rank. The groups must be the ones the op will communicate over. */
export function createAttention(scheme: SchemeName, groups: SpGroups, kernels: Kernels, opts: AttentionOptions): SpAttention {
  const need = (g: ProcessGroup | undefined, axis: string): ProcessGroup => {
    if (!g) throw new Error(`${scheme}: needs the '${axis}' process group`);
    return g;
  };
  const realS = opts.realS ?? opts.S;
  const ringOpts = { overlap: opts.overlap, realS };
  switch (scheme) {
    case 'local':
      return createLocalAttention(kernels, opts.S, padLayout(contiguousLayout(opts.S, 1, 'local'), realS));
    case 'ulysses': {
      const sp = need(groups.sp, 'sp');
      return createUlyssesAttention(sp, kernels, opts.S, padLayout(contiguousLayout(opts.S, sp.size, 'ulysses'), realS), { shared: opts.shared });
    }
    case 'ring':
    case 'zigzag':
    case 'stripe':
      return createRingAttention(scheme, need(groups.sp, 'sp'), kernels, opts.S, ringOpts);
    case 'allgather':
      return createAllGatherAttention(need(groups.sp, 'sp'), kernels, opts.S, { layout: opts.allgatherLayout, realS });
    case 'rsa':
      return createRsaAttention(need(groups.sp, 'sp'), opts.S, realS);
    case 'hybrid':
      return createHybridAttention({ ulysses: need(groups.ulysses, 'ulysses'), ring: need(groups.ring, 'ring') }, kernels, opts.S, ringOpts);
    default:
      throw new Error(`unknown scheme '${String(scheme)}' (one of ${SCHEMES.join(', ')})`);
  }
}

/** One collective call as the CommLog will record it (bytes = the call's main buffer). */
export interface PlannedCall {
  axis: string;
  op: CommRecord['op'];
  /** Byte size of the call's main buffer (see `sentBytes`). */
  bufBytes: number;
  /** Group size. */
  P: number;
  /** For sendRecv: whether the destination is another rank. */
  remote?: boolean;
}

export interface CostOptions {
  /** Bytes per element of q/k/v/out/lse (4 = float32, the default; 8 = float64). */
  bytesPerElement?: number;
  /** hybrid: size of the ulysses axis. */
  ulysses?: number;
  allgatherLayout?: AllGatherLayout;
  /**
   * ulysses, hybrid: backward reuses the head-side q, k, v, out, lse that forward left in the
   * `saved` slot (default true: what training and distributedAttention with dOut do); false plans
   * the calls without a slot, which exchange them again.
   */
  savedSlot?: boolean;
  /**
   * ulysses on a transport that shares memory (AttentionOptions.shared), kv heads split or replicated: 4
   * barriers and no saved slot. The bytes the exchange would send still cross between the cores,
   * read and written by the kernels; the group's one-time peerBuffers mapping is not counted.
   */
  shared?: boolean;
}

/** Whether a ulysses plan takes the shared path (ulysses-shared.ts: every head split Ulysses accepts, P > 1). */
const sharedUlysses = (scheme: SchemeName, P: number, o: CostOptions) => scheme === 'ulysses' && !!o.shared && P > 1;

/** Every collective call one rank makes for forward + backward, in call order. */
export function commPlan(scheme: SchemeName, d: AttnDims, P: number, o: CostOptions = {}): PlannedCall[] {
  const beta = o.bytesPerElement ?? 4;
  const { B, S, H, G, D } = d;
  const ringCalls = (axis: string, Pr: number, n: number, steps = Pr) => {
    // n = elements of one k (or v) block; k|v travel packed, dK|dV likewise. `steps`: the ring
    // steps a sliding window leaves (ring.ts ringSteps; Pr without one).
    const fwd: PlannedCall[] = [];
    for (let s = 0; s < steps - 1; s++) fwd.push({ axis, op: 'sendRecv', bufBytes: 2 * n * beta, P: Pr, remote: true });
    const bwd: PlannedCall[] = [];
    for (let s = 0; s < steps; s++) {
      if (s < steps - 1) bwd.push({ axis, op: 'sendRecv', bufBytes: 2 * n * beta, P: Pr, remote: true });
      // dK|dV accumulators travel steps − 1 hops (ring.ts): one per step after the first
      if (s >= 1) bwd.push({ axis, op: 'sendRecv', bufBytes: 2 * n * beta, P: Pr, remote: true });
    }
    return { fwd, bwd };
  };
  const a2a = (axis: string, Pu: number, T: number, Hq: number, Hkv: number) => {
    const { qs, kvs } = ulyssesSplits(scheme, Hq, Hkv, Pu, axis);
    const Hl = qs.perRank;
    const Gl = kvs.perRank;
    // One allToAll per tensor (ulysses.ts), each of P chunks [B, T, heads/P, D|1].
    const call = (x: number): PlannedCall => ({ axis, op: 'allToAll', bufBytes: Pu * B * T * x * beta, P: Pu });
    const [q, kv, lse] = [call(Hl * D), call(Gl * D), call(Hl)];
    return {
      Gl,
      Hl,
      fwdIn: [q, kv, kv],
      fwdOut: [q, lse],
      // kept: dOut only; stateless: q, k, v, out, lse again, then dOut
      bwdIn: o.savedSlot ?? true ? [q] : [q, kv, kv, q, lse, q],
      bwdOut: [q, kv, kv],
    };
  };
  const T = S / P;
  switch (scheme) {
    case 'local':
      return [];
    case 'ring':
    case 'zigzag':
    case 'stripe': {
      const { fwd, bwd } = ringCalls('sp', P, B * T * G * D, ringSteps(ringLayout(scheme, S, P), d.causal, d.window));
      return [...fwd, ...bwd];
    }
    case 'ulysses': {
      ulyssesSplits(scheme, H, G, P, 'sp');
      if (sharedUlysses(scheme, P, o)) return Array.from({ length: 4 }, (): PlannedCall => ({ axis: 'sp', op: 'barrier', bufBytes: 0, P }));
      const x = a2a('sp', P, T, H, G);
      return [...x.fwdIn, ...x.fwdOut, ...x.bwdIn, ...x.bwdOut];
    }
    case 'allgather': {
      const n = B * T * G * D;
      const ag: PlannedCall = { axis: 'sp', op: 'allGather', bufBytes: 2 * n * beta, P };
      return [ag, ag, { axis: 'sp', op: 'reduceScatter', bufBytes: 2 * n * P * beta, P }];
    }
    case 'rsa': {
      const n = B * T * G * D;
      const pass = Array.from({ length: P - 1 }, (): PlannedCall => ({ axis: 'sp', op: 'sendRecv', bufBytes: n * beta, P, remote: true }));
      return [...pass, ...pass, ...pass, ...pass, { axis: 'sp', op: 'allReduce', bufBytes: 2 * B * S * G * D * beta, P }];
    }
    case 'hybrid': {
      const u = o.ulysses;
      if (u === undefined || P % u !== 0) throw new Error(`hybrid: ulysses=${u} must be a positive divisor of sp=${P}`);
      const r = P / u;
      const x = a2a('ulysses', u, T, H, G);
      const { fwd, bwd } = ringCalls('ring', r, B * (S / r) * x.Gl * D, ringSteps(zigzagLayout(S, r, 'hybrid'), d.causal, d.window));
      return [...x.fwdIn, ...fwd, ...x.fwdOut, ...x.bwdIn, ...bwd, ...x.bwdOut];
    }
    default:
      throw new Error(`unknown scheme '${String(scheme)}'`);
  }
}

/** ulysses, hybrid: bytes of the saved slot (head-side q, k, v, out, lse) held from forward to backward. */
function savedSlotBytes(scheme: SchemeName, d: AttnDims, P: number, o: CostOptions): number {
  if (!(o.savedSlot ?? true) || (scheme !== 'ulysses' && scheme !== 'hybrid') || sharedUlysses(scheme, P, o)) return 0;
  const u = scheme === 'hybrid' ? o.ulysses! : P;
  const sizes = ulyssesSavedSizes(scheme, { ...d, T: d.S / P }, u, scheme === 'hybrid' ? 'ulysses' : 'sp');
  return sizes.reduce((a, b) => a + b, 0) * (o.bytesPerElement ?? 4);
}

/**
 * Work of the busiest rank (it sets the step time) in FLOPs, forward + backward: every allowed
 * (query, key) pair costs 4·D forward (q·k, p·v) and 10·D backward (recompute q·k, dO·v, dv, dq, dk),
 * per query head the rank computes. RSA computes all pairs, masked or not.
 */
function busiestRankFlops(scheme: SchemeName, d: AttnDims, P: number, o: CostOptions): number {
  const { B, S, H, D, causal } = d;
  const perPair = 14 * D * B;
  if (scheme === 'rsa') return perPair * H * (S / P) * S;
  if (scheme === 'ulysses') return perPair * (H / P) * allowedPairs(contiguousLayout(S, 1).positions(0), S, causal, d.window);
  const layout = layoutFor(scheme, S, P, o);
  let worst = 0;
  if (scheme === 'hybrid') {
    // A rank computes H/u heads for all tokens of its ring rank's zigzag pair.
    const u = o.ulysses!;
    const pair = zigzagLayout(S, P / u);
    for (let rho = 0; rho < P / u; rho++) worst = Math.max(worst, allowedPairs(pair.positions(rho), S, causal, d.window));
    return perPair * (H / u) * worst;
  }
  for (let r = 0; r < P; r++) worst = Math.max(worst, allowedPairs(layout.positions(r), S, causal, d.window));
  return perPair * H * worst;
}

/**
 * Cost of one attention layer (forward + backward) for one rank: commBytes per axis equal the
 * CommLog totals exactly (same calls, same `sentBytes`, same order of summation).
 */
export function cost(scheme: SchemeName, d: AttnDims, P: number, o: CostOptions = {}): AttnCost {
  const commBytes: Record<string, number> = {};
  for (const c of commPlan(scheme, d, P, o)) {
    const peer = c.op === 'sendRecv' ? (c.remote && c.P > 1 ? 1 : 0) : 0;
    commBytes[c.axis] = (commBytes[c.axis] ?? 0) + sentBytes(c.op, c.bufBytes, c.P, 0, peer);
  }
  return { flops: busiestRankFlops(scheme, d, P, o), commBytes, savedBytes: savedSlotBytes(scheme, d, P, o) };
}
