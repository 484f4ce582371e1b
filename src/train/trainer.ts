/**
 * The training loop of one rank. Every rank runs it (SPMD); rank 0 writes metrics and
 * checkpoints. Loss is normalised by the GLOBAL count of counted targets (sum over every rank and
 * micro-batch), so gradients are summed over all ranks exactly once (DESIGN §8).
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Arena } from '../tensor/arena.js';
import { allocLike, type Buf } from '../tensor/dtype.js';
import { Rng } from '../tensor/rng.js';
import type { Kernels } from '../kernels/types.js';
import type { AttentionOp } from '../parallel/types.js';
import { GPT, IGNORE_INDEX } from '../model/gpt.js';
import { modelConfigOf, type TrainOptions } from './options.js';
import { lrAt } from './optim.js';
import { createOptimizer, SINGLE_RANK, type GradComm } from './zero.js';
import { documentsOf, evalStarts, sampleStarts, shardBatch, windows, type Corpus } from './data.js';
import { loadCheckpoint, restoreFlat, saveCheckpoint } from './checkpoint.js';

export interface RankEnv {
  kernels: Kernels;
  /** World rank; rank 0 writes files and reports progress. */
  rank: number;
  dpRank: number;
  dp: number;
  spRank: number;
  sp: number;
  attn: AttentionOp;
  /** Sums a buffer over every rank that holds a share of the loss (sp × dp); identity on one rank. */
  allReduceSum(buf: Buf): Promise<void>;
  /**
   * The same ranks' reduce-scatter and all-gather, for the sharded optimizer (--shard-optimizer);
   * absent: the optimizer is replicated whatever the option says.
   */
  gradComm?: GradComm;
}

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  peakBytes: number;
  stepSec: number;
  valBpb?: number;
}

export interface TrainResult {
  losses: number[];
  valBpb: number | null;
  params: Buf;
  steps: number;
  peakBytes: number;
}

const LN2 = Math.log(2);

export async function trainRank(o: TrainOptions, corpus: Corpus, env: RankEnv, onStep?: (m: StepMetrics, totalSteps: number) => void): Promise<TrainResult> {
  const cfg = modelConfigOf(o);
  // S real tokens per sequence; attention runs on the layout's length (S padded with --pad).
  const S = o.seqLen;
  const layout = env.attn.layout;
  const Sa = layout.S;
  const pos = layout.positions(env.spRank);
  const T = pos.length;
  const arena = new Arena(o.dtype);
  const comm: GradComm = env.gradComm ?? { ...SINGLE_RANK, allReduceSum: env.allReduceSum };
  const shard = o.shardOptimizer && comm.size > 1;
  const model = new GPT({ config: cfg, kernels: env.kernels, arena, dtype: o.dtype, rows: { B: o.batch, T }, checkpoint: o.ckptActivations, flatMultiple: shard ? comm.size : 1, ioAlloc: env.attn.ioAlloc });
  const hp = { beta1: o.beta1, beta2: o.beta2, eps: 1e-8, weightDecay: o.weightDecay };
  // Replicated: gradients all-reduced, AdamW on every parameter everywhere. Sharded (ZeRO-1):
  // reduce-scatter, AdamW on this rank's 1/W, all-gather of the parameters (zero.ts).
  const opt = createOptimizer(model.store, arena, hp, model.params, comm, shard);
  const n = model.store.size;
  const rng = new Rng(o.seed + 1);
  let start = 0;
  if (o.resume) {
    const ck = loadCheckpoint(o.resume);
    restoreFlat(model.store, model.params, ck.params);
    const m = allocLike(model.params, n);
    const v = allocLike(model.params, n);
    restoreFlat(model.store, m, ck.optimizer, 'm.');
    restoreFlat(model.store, v, ck.optimizer, 'v.');
    opt.loadState(m, v);
    opt.adam.step = ck.state.optimizer.step;
    start = ck.state.step;
    rng.setState(ck.state.dataRng);
  } else {
    model.store.init(model.params, o.seed);
  }
  const metricsPath = o.out && env.rank === 0 ? join(o.out, 'metrics.jsonl') : null;
  if (metricsPath) mkdirSync(o.out!, { recursive: true });

  // Counts and loss sums are reduced in float64 whatever the model dtype.
  const sum64 = async (vals: number[]): Promise<number[]> => {
    const b = new Float64Array(vals);
    await env.allReduceSum(b);
    return Array.from(b);
  };

  const evaluate = async (): Promise<number> => {
    const starts = evalStarts(corpus.val.length, S, o.evalBatches * o.batch * env.dp);
    let lossSum = 0;
    let count = 0;
    for (let e = 0; e < o.evalBatches; e++) {
      const chunk = starts.slice((e * env.dp + env.dpRank) * o.batch, (e * env.dp + env.dpRank + 1) * o.batch);
      const batch = windows(corpus.val, chunk, S);
      const sh = shardBatch(batch, 0, o.batch, pos);
      const docs = o.docSep >= 0 ? documentsOf(batch, 0, o.docSep) : undefined;
      const r = await model.forward({ ...sh, pos, S: Sa, attn: env.attn, docs });
      lossSum += r.lossSum;
      count += r.count;
    }
    const [ls, c] = await sum64([lossSum, count]);
    return ls! / c! / LN2;
  };

  const losses: number[] = [];
  let valBpb: number | null = null;
  for (let step = start; step < o.steps; step++) {
    const t0 = performance.now();
    arena.resetPeak();
    const lr = lrAt(step, { lr: o.lr, warmup: o.warmup, total: o.steps, minLrFrac: o.minLrFrac });
    const micro = Array.from({ length: o.gradAccum }, () => {
      const starts = sampleStarts(rng, corpus.train.length, S, o.batch * env.dp);
      const batch = windows(corpus.train, starts, S);
      const docs = o.docSep >= 0 ? documentsOf(batch, env.dpRank * o.batch, o.docSep) : undefined;
      return { ...shardBatch(batch, env.dpRank * o.batch, o.batch, pos), docs };
    });
    let localCount = 0;
    for (const m of micro) for (const t of m.targets) if (t !== IGNORE_INDEX) localCount++;
    const [globalCount] = await sum64([localCount]);
    model.grads.fill(0);
    let lossSum = 0;
    for (const m of micro) {
      const r = await model.forward({ ...m, pos, S: Sa, attn: env.attn });
      lossSum += r.lossSum;
      await model.backward(1 / globalCount!);
    }
    const gradNorm = await opt.step(env.kernels, model.params, model.grads, lr, o.clip);
    const [globalLoss] = await sum64([lossSum]);
    const loss = globalLoss! / globalCount!;
    losses.push(loss);
    const stepSec = (performance.now() - t0) / 1000;
    const m: StepMetrics = {
      step: step + 1,
      loss,
      lr,
      gradNorm,
      tokensPerSec: (o.batch * env.dp * S * o.gradAccum) / stepSec,
      peakBytes: arena.stats().peakBytes,
      stepSec,
    };
    const last = step + 1 === o.steps;
    if ((o.evalEvery > 0 && (step + 1) % o.evalEvery === 0) || last) {
      valBpb = await evaluate();
      m.valBpb = valBpb;
    }
    if (metricsPath) appendFileSync(metricsPath, JSON.stringify(m) + '\n');
    if (o.out && ((o.checkpointEvery > 0 && (step + 1) % o.checkpointEvery === 0) || last)) {
      // every rank takes part in gathering a sharded state; rank 0 writes it
      const { m, v } = await opt.fullState();
      if (env.rank === 0) saveCheckpoint(o.out, model.store, { params: model.params.subarray(0, n), m, v }, {
        step: step + 1,
        dtype: o.dtype,
        config: { ...cfg },
        train: { ...o, resume: null },
        dataRng: rng.state(),
        optimizer: { step: opt.adam.step, ...opt.adam.hp },
      });
    }
    onStep?.(m, o.steps);
  }
  return { losses, valBpb, params: model.params.subarray(0, n), steps: o.steps, peakBytes: arena.stats().peakBytes };
}
