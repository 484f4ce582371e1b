/**
 * Library entry: run one sequence-parallel attention scheme over P ranks on GLOBAL tensors and get
 * global results back. Each rank takes its shard by the scheme's layout, runs forward (and backward
 * when dOut is given) through the same AttentionOp the trainer uses, and the shards are put back in
 * global token order. Inproc by default (all ranks in this thread); 'threads' runs one worker per
 * rank with the js kernels.
 *
 * With `pad`, a length the scheme's layout does not split is padded at the end to the next one
 * that it does (index.ts paddedLength). The padding positions are −1, so attention masks them, and
 * every result (out, lse, gradients) covers only the S real tokens.
 */
import { prepareRankThread } from './rank-thread.js';
import type { Buf, DType } from '../tensor/dtype.js';
import { allocBuf, dtypeOf } from '../tensor/dtype.js';
import type { Kernels } from '../kernels/types.js';
import type { CommRecord, World } from '../comm/types.js';
import { runRanks } from '../comm/run.js';
import type { ThreadsPool } from '../comm/threads/launcher.js';
import { DeviceMesh } from '../comm/mesh.js';
import { jsKernels } from '../kernels/js/index.js';
import type { AttnDims, SchemeName } from './types.js';
import type { AllGatherLayout } from './allgather.js';
import { gatherTokens, padLayout, unshardTokens } from './layout.js';
import { createAttention, layoutFor, paddedLength, validateScheme } from './index.js';

export interface DistributedAttentionOptions {
  scheme: SchemeName;
  /** Ranks sharing the sequence (1 for 'local'). */
  P: number;
  /** [B, S, H, D] */
  q: Buf;
  /** [B, S, G, D] */
  k: Buf;
  v: Buf;
  /** [B, S, H, D]: when given, dq, dk, dv are computed. */
  dOut?: Buf;
  B: number;
  S: number;
  H: number;
  G: number;
  D: number;
  /** Default true. */
  causal?: boolean;
  /** Sliding window: a query at position p attends keys ≥ p − window only (default: none). */
  window?: number;
  /** Packed documents (B = 1): docs[p] = document of position p, [S]; attention stays within each. */
  docs?: Int32Array;
  /** Default 1/√D. */
  scale?: number;
  /** hybrid: size of the ulysses axis (ring = P / ulysses). */
  ulysses?: number;
  /** Default 'inproc'. */
  transport?: 'inproc' | 'threads';
  /** inproc only (workers always use the js kernels). Default js. */
  kernels?: Kernels;
  /**
   * Pad S to the next length the scheme's layout splits (default false: such an S is an error).
   * The padding never takes part in attention; results cover the S real tokens.
   */
  pad?: boolean;
  /** Ring schemes: overlap transfers with compute (default true). */
  overlap?: boolean;
  allgatherLayout?: AllGatherLayout;
  /**
   * ulysses: each rank runs the kernels on every member's tensors in place (both transports share
   * memory) instead of exchanging heads; the logs then hold barriers, no all-to-alls. Default false.
   */
  shared?: boolean;
  timeoutMs?: number;
  /** threads: reuse these P workers (warm JIT, no start-up) instead of starting new ones. */
  pool?: ThreadsPool;
}

export interface RankReport {
  /** Bytes this rank sent, per axis (fwd + bwd). */
  commBytes: Record<string, number>;
  /** Every logged call, per axis, in order. */
  records: Record<string, CommRecord[]>;
  /** Bytes the op's scratch pool holds (persistent across calls). */
  scratchBytes: number;
  /** Global positions this rank held. */
  positions: Int32Array;
  /** Seconds of forward and backward on this rank. */
  forwardSec: number;
  backwardSec: number;
}

export interface DistributedAttentionResult {
  /** [B, S, H, D], global order. */
  out: Buf;
  /** [B, S, H] */
  lse: Buf;
  dq?: Buf;
  dk?: Buf;
  dv?: Buf;
  /** Sum over ranks of bytes sent, per axis. */
  commBytes: Record<string, number>;
  ranks: RankReport[];
}

/** What one rank receives (structured-cloneable for the threads transport). */
interface RankArgs {
  o: Omit<DistributedAttentionOptions, 'kernels' | 'transport' | 'timeoutMs' | 'pool'>;
}

interface RankResult extends RankReport {
  out: Buf;
  lse: Buf;
  dq?: Buf;
  dk?: Buf;
  dv?: Buf;
}

/** The length the scheme runs on: S, or with `pad` the next length its layout splits. */
function runLength(o: Pick<DistributedAttentionOptions, 'scheme' | 'S' | 'P' | 'ulysses' | 'allgatherLayout' | 'pad'>): number {
  return o.pad ? paddedLength(o.scheme, o.S, o.P, o) : o.S;
}

async function rankBody(world: World, a: RankArgs, kernels: Kernels): Promise<RankResult> {
  const o = a.o;
  const { B, S, H, G, D, P } = o;
  const Sp = runLength(o);
  const u = o.scheme === 'hybrid' ? o.ulysses! : 1;
  const mesh = DeviceMesh.create({ sp: P, ulysses: u, ring: P / u }, world);
  const groups = { sp: mesh.group('sp'), ulysses: mesh.group('ulysses'), ring: mesh.group('ring') };
  const op = createAttention(o.scheme, groups, kernels, { S: Sp, realS: S, overlap: o.overlap, allgatherLayout: o.allgatherLayout, shared: o.shared });
  const pos = op.positions;
  const T = pos.length;
  const dt = dtypeOf(o.q);
  // Where the op works on the tensors in place across ranks, they live in memory it provides;
  // results are copied out of it (a worker's arena outlives this call).
  const io = op.ioAlloc;
  const buf = (n: number): Buf => (io ? io(dt, n) : allocBuf(dt, n));
  const copyInto = (y: Buf, x: Buf): Buf => (y.set(x), y);
  const place = (x: Buf): Buf => (io ? copyInto(buf(x.length), x) : x);
  const own = (x: Buf): Buf => (io ? copyInto(allocBuf(dt, x.length), x) : x);
  // [B, S, heads, D] global -shard(layout)-> [B, T, heads, D] of this rank (padding: zero rows)
  const q = place(gatherTokens(o.q, pos, B, S, H * D));
  const k = place(gatherTokens(o.k, pos, B, S, G * D));
  const v = place(gatherTokens(o.v, pos, B, S, G * D));
  const d: AttnDims = { B, S: Sp, T, H, G, D, causal: o.causal ?? true, ...(o.window !== undefined ? { window: o.window } : {}), ...(o.docs ? { docs: o.docs } : {}), scale: o.scale ?? 1 / Math.sqrt(D) };
  const out = buf(B * T * H * D);
  const lse = buf(B * T * H);
  let t0 = performance.now();
  // With dOut, the op's saved slot carries what its backward needs (Ulysses: head-side q, k, v, out, lse).
  const nSaved = o.dOut ? (op.savedElements?.(d) ?? 0) : 0;
  const saved = nSaved > 0 ? allocBuf(dtypeOf(o.q), nSaved) : undefined;
  await op.forward({ out, lse, saved }, { q, k, v }, d);
  const forwardSec = (performance.now() - t0) / 1000;
  const res: RankResult = { out: own(out), lse: own(lse), commBytes: {}, records: {}, scratchBytes: 0, positions: pos, forwardSec, backwardSec: 0 };
  if (o.dOut) {
    const dOut = place(gatherTokens(o.dOut, pos, B, S, H * D));
    const [dq, dk, dv] = [buf(q.length), buf(k.length), buf(v.length)];
    t0 = performance.now();
    await op.backward({ dq, dk, dv }, { dOut, q, k, v, out, lse, saved }, d);
    res.backwardSec = (performance.now() - t0) / 1000;
    [res.dq, res.dk, res.dv] = [own(dq), own(dk), own(dv)];
  }
  // One log per group; with an unsplit sp the ring group is a different group over the same ranks.
  for (const [axis, g] of Object.entries(groups)) {
    const recs = g.log.records.filter((x) => x.axis === axis);
    if (recs.length === 0) continue;
    res.records[axis] = recs.map((x) => ({ ...x }));
    res.commBytes[axis] = g.log.totalBytes({ axis });
  }
  res.scratchBytes = op.scratch.peakBytes;
  return res;
}

/** Entry for the threads transport: every worker runs this with the same args. */
export async function distributedAttentionRank(world: World, args: unknown): Promise<RankResult> {
  prepareRankThread(world);
  return rankBody(world, args as RankArgs, jsKernels);
}

export async function distributedAttention(opts: DistributedAttentionOptions): Promise<DistributedAttentionResult> {
  const { scheme, P, B, S, H, G, D } = opts;
  const Sp = runLength(opts);
  validateScheme(scheme, { S: Sp, P, H, G, ulysses: opts.ulysses, allgatherLayout: opts.allgatherLayout });
  const want = (name: string, b: Buf | undefined, n: number) => {
    if (b && b.length !== n) throw new Error(`distributedAttention: ${name} has ${b.length} elements, expected ${n}`);
  };
  want('q', opts.q, B * S * H * D);
  want('k', opts.k, B * S * G * D);
  want('v', opts.v, B * S * G * D);
  want('dOut', opts.dOut, B * S * H * D);
  const dtype: DType = dtypeOf(opts.q);
  for (const [name, b] of [['k', opts.k], ['v', opts.v], ['dOut', opts.dOut]] as const) {
    if (b && dtypeOf(b) !== dtype) throw new Error(`distributedAttention: ${name} is ${dtypeOf(b)} but q is ${dtype}`);
  }
  const { kernels, transport, timeoutMs, pool, ...rest } = opts;
  const args: RankArgs = { o: rest };
  const results =
    transport === 'threads'
      ? await runRanks<RankResult>(P, { module: new URL(import.meta.url), fn: 'distributedAttentionRank', args }, { transport: 'threads', timeoutMs, pool })
      : await runRanks<RankResult>(P, (w) => rankBody(w, args, kernels ?? jsKernels), { timeoutMs });
  const layout = padLayout(layoutFor(scheme, Sp, P, opts), S);
  // P × [B, T, heads, D] -unshard(layout)-> [B, S, heads, D] global (padding dropped)
  const join = (get: (r: RankResult) => Buf | undefined, row: number) => unshardTokens(layout, results.map((r) => get(r)!), B, row);
  const res: DistributedAttentionResult = {
    out: join((r) => r.out, H * D),
    lse: join((r) => r.lse, H),
    commBytes: {},
    ranks: results.map(({ commBytes, records, scratchBytes, positions, forwardSec, backwardSec }) => ({ commBytes, records, scratchBytes, positions, forwardSec, backwardSec })),
  };
  if (opts.dOut) {
    res.dq = join((r) => r.dq, H * D);
    res.dk = join((r) => r.dk, G * D);
    res.dv = join((r) => r.dv, G * D);
  }
  for (const r of results) for (const [axis, b] of Object.entries(r.commBytes)) res.commBytes[axis] = (res.commBytes[axis] ?? 0) + b;
  return res;
}
