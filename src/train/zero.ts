/**
 * The optimizer step of one rank, after its backward: reduce the gradients over every rank that
 * holds a share of the loss, clip them to the global norm, apply AdamW.
 *
 * - replicated: all-reduce the whole gradient; every rank keeps all of m and v and updates every
 *   parameter (the same arithmetic on every rank).
 * - sharded (ZeRO stage 1, Rajbhandari et al. 2020): the flat parameters [W·c] (GPTOptions
 *   flatMultiple = W) are cut into W chunks of c. Reduce-scatter leaves rank r the summed gradient
 *   of chunk r; the global norm is the sum over ranks of the chunks' squares; rank r runs AdamW on
 *   chunk r only, with m and v of c elements each; all-gather brings every rank the updated
 *   parameters. The same bytes move as in the all-reduce (which is a reduce-scatter and an
 *   all-gather), the AdamW work and its state fall to 1/W per rank.
 */
import type { Arena } from '../tensor/arena.js';
import type { Kernels } from '../kernels/types.js';
import type { ParamStore } from '../model/params.js';
import type { ProcessGroup } from '../comm/types.js';
import { allocLike, type Buf } from '../tensor/dtype.js';
import { AdamW, clipGradNorm, clipToNorm, type AdamWHyper } from './optim.js';

/** The collectives over the ranks that sum the gradients (the world: sp × dp). */
export interface GradComm {
  rank: number;
  size: number;
  /** In place; the identity on one rank. */
  allReduceSum(buf: Buf): Promise<void>;
  /** input [size·n] → out [n]: the sum over ranks of input chunk `rank`; out may be that chunk itself. */
  reduceScatterSum(out: Buf, input: Buf): Promise<void>;
  /** input [n] → out [size·n]: chunk j is rank j's input; input may be out's chunk `rank` itself. */
  allGather(out: Buf, input: Buf): Promise<void>;
}

/** GradComm over a process group (the world, for sp × dp). */
export function gradCommOf(group: ProcessGroup): GradComm {
  return {
    rank: group.rank,
    size: group.size,
    allReduceSum: (buf) => (group.size === 1 ? Promise.resolve() : group.allReduce(buf, 'sum')),
    reduceScatterSum: (out, input) => group.reduceScatter(out, input, 'sum'),
    allGather: (out, input) => group.allGather(out, input),
  };
}

/** One rank and nothing to reduce over (a replicated optimizer never calls the other two). */
export const SINGLE_RANK: GradComm = {
  rank: 0,
  size: 1,
  allReduceSum: () => Promise.resolve(),
  reduceScatterSum: () => Promise.reject(new Error('reduce-scatter over one rank')),
  allGather: () => Promise.reject(new Error('all-gather over one rank')),
};

export interface TrainOptimizer {
  readonly adam: AdamW;
  /**
   * grads: this rank's (unreduced) share, as the backward left it; params: updated in place on
   * every rank. Returns the global gradient norm before clipping (clip 0 = no clipping).
   */
  step(k: Kernels, params: Buf, grads: Buf, lr: number, clip: number): Promise<number>;
  /** The whole m and v [store.size]; collective when sharded (every rank must call it). */
  fullState(): Promise<{ m: Buf; v: Buf }>;
  /** Sets the state from whole m and v [store.size] (a checkpoint's). */
  loadState(m: Buf, v: Buf): void;
}

/** Elements of the flat buffers for `ranks` chunks: store.size rounded up to a multiple of ranks. */
export function flatLength(n: number, ranks: number): number {
  return Math.ceil(n / ranks) * ranks;
}

export function createOptimizer(
  store: ParamStore,
  arena: Arena,
  hp: AdamWHyper,
  params: Buf,
  comm: GradComm,
  shard: boolean,
): TrainOptimizer {
  const n = store.size;
  if (!shard || comm.size === 1) {
    const adam = new AdamW(store, arena, hp, params);
    return {
      adam,
      async step(k, p, grads, lr, clip) {
        await comm.allReduceSum(grads);  // the identity on one rank
        const g = grads.subarray(0, n);
        const norm = clipGradNorm(k, g, clip);
        adam.update(k, p, g, lr);
        return norm;
      },
      fullState: async () => ({ m: adam.m, v: adam.v }),
      loadState(m, v) {
        adam.m.set(m.subarray(0, n));
        adam.v.set(v.subarray(0, n));
      },
    };
  }
  const W = comm.size;
  if (params.length !== flatLength(n, W)) throw new Error(`sharded optimizer: flat parameters hold ${params.length} elements, need ${flatLength(n, W)} (${n} rounded up to a multiple of ${W} ranks)`);
  const c = params.length / W;
  const lo = comm.rank * c;
  const adam = new AdamW(store, arena, hp, params, { lo, hi: lo + c });
  return {
    adam,
    async step(k, p, grads, lr, clip) {
      if (grads.length !== W * c) throw new Error(`sharded optimizer: gradients hold ${grads.length} elements, need ${W * c}`);
      // [W·c] grads -reduceScatter(world, in place)-> chunk r of grads = the sum of everyone's chunk r
      const gShard = grads.subarray(lo, lo + c);
      await comm.reduceScatterSum(gShard, grads);
      const sq = new Float64Array([k.sumSquares(gShard)]);
      await comm.allReduceSum(sq);
      const norm = Math.sqrt(sq[0]!);
      clipToNorm(k, gShard, norm, clip);
      adam.update(k, p, gShard, lr);
      // [c] chunk r of params -allGather(world)-> [W·c] params on every rank
      await comm.allGather(p, p.subarray(lo, lo + c));
      return norm;
    },
    async fullState() {
      const m = allocLike(params);
      const v = allocLike(params);
      await comm.allGather(m, adam.m);
      await comm.allGather(v, adam.v);
      return { m: m.subarray(0, n), v: v.subarray(0, n) };
    },
    loadState(m, v) {
      const hi = Math.min(lo + c, n);
      adam.m.fill(0).set(m.subarray(lo, Math.max(lo, hi)));
      adam.v.fill(0).set(v.subarray(lo, Math.max(lo, hi)));
    },
  };
}
