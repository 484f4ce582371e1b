/**
 * The optimizer step of `seqpar train` on P worker-thread ranks, sharded (ZeRO-1: reduce-scatter,
 * AdamW on 1/P, all-gather) against replicated (all-reduce, AdamW on everything), for the
 * reference model's 3.3M parameters, in one process: the two alternate step by step on the same
 * ranks, so a shared host's drift hits both alike. Checks first that one step of each gives the
 * same parameters, then appends one JSON line (medians over the steps, the slower rank's) to
 * bench/results/optimizer-ab_<host>_<date>.jsonl.
 *   node dist/bench/e2e/zero-ab.js [--smoke]
 */
import { isMainThread } from 'node:worker_threads';
import type { World } from '../../src/comm/types.js';
import { runRanks } from '../../src/comm/run.js';
import { selectKernels } from '../../src/kernels/index.js';
import { prepareRankThread } from '../../src/parallel/rank-thread.js';
import { GPT } from '../../src/model/gpt.js';
import { ParamStore } from '../../src/model/params.js';
import { Arena } from '../../src/tensor/arena.js';
import { createOptimizer, gradCommOf } from '../../src/train/zero.js';
import { REFERENCE_MODEL } from './train-step.js';
import { appendResult, median } from '../util.js';

interface AbArgs {
  steps: number;
}

interface AbRank {
  replicatedMs: number[];
  shardedMs: number[];
  maxDiff: number;
}

export async function zeroAbEntry(world: World, a: AbArgs): Promise<AbRank> {
  prepareRankThread(world);
  const { kernels } = selectKernels('native');
  const g = world.group;
  const comm = gradCommOf(g);
  const hp = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  const make = (shard: boolean) => {
    const arena = new Arena('float32');
    const model = new GPT({ config: REFERENCE_MODEL, kernels, arena, dtype: 'float32', rows: { B: 1, T: 16 }, flatMultiple: shard ? world.size : 1 });
    model.store.init(model.params, 5);
    return { model, opt: createOptimizer(model.store, arena, hp, model.params, comm, shard) };
  };
  const v = [make(false), make(true)];
  const n = v[0]!.model.store.size;
  // this rank's share of the gradient: the same on both, different per rank
  const fillGrads = (x: Float32Array) => {
    for (let i = 0; i < n; i++) x[i] = 1e-3 * Math.sin(0.37 * i + 1.3 * world.rank);
  };
  const ms: number[][] = [[], []];
  let maxDiff = 0;
  for (let s = 0; s < a.steps + 1; s++) {
    for (const w of s % 2 ? [0, 1] : [1, 0]) {
      const { model, opt } = v[w]!;
      fillGrads(model.grads as Float32Array);
      await g.barrier();
      const t0 = performance.now();
      await opt.step(kernels, model.params, model.grads, 1e-4, 1.0);
      const t = new Float64Array([performance.now() - t0]);
      await g.allReduce(t, 'max');
      if (s > 0) ms[w]!.push(t[0]!);  // step 0 is a warm-up
    }
    if (s === 0) for (let i = 0; i < n; i++) maxDiff = Math.max(maxDiff, Math.abs(v[0]!.model.params[i]! - v[1]!.model.params[i]!));
  }
  return { replicatedMs: ms[0]!, shardedMs: ms[1]!, maxDiff };
}

/** The reference model's parameter count (the flat buffers' real length). */
const REFERENCE_MODEL_PARAMS = new ParamStore(REFERENCE_MODEL).size;

export async function runZeroAb(smoke = false, P = 2): Promise<Record<string, unknown>> {
  const steps = smoke ? 1 : 40;
  const res = await runRanks<AbRank>(P, { module: new URL(import.meta.url), fn: 'zeroAbEntry', args: { steps } }, { transport: 'threads', timeoutMs: 0 });
  const r = res[0]!;  // every rank's times are the max over ranks already
  // the same first update both ways (float32: the sums of squares and the reduction order differ in rounding)
  if (!(r.maxDiff < 1e-6)) throw new Error(`optimizer-ab: sharded and replicated parameters differ by ${r.maxDiff} after one step`);
  const rec: Record<string, unknown> = {
    bench: 'optimizer-ab', ranks: P, steps,
    replicatedMs: median(r.replicatedMs), shardedMs: median(r.shardedMs), shardedOverReplicated: median(r.shardedMs) / median(r.replicatedMs),
    params: REFERENCE_MODEL_PARAMS, maxParamDiff: r.maxDiff, smoke,
  };
  return rec;
}

if (isMainThread && process.argv[1]?.endsWith('zero-ab.js')) {
  const smoke = process.argv.includes('--smoke');
  const rec = await runZeroAb(smoke);
  console.log(`optimizer step on 2 ranks: sharded ${(rec.shardedMs as number).toFixed(2)} ms, replicated ${(rec.replicatedMs as number).toFixed(2)} ms (${(rec.shardedOverReplicated as number).toFixed(3)}x); first step's largest parameter difference ${(rec.maxParamDiff as number).toExponential(1)}`);
  if (!smoke) console.log(`results: ${appendResult('optimizer-ab', rec)}`);
}
