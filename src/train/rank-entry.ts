/**
 * What every rank runs in a multi-rank (or single-rank) training job: build the mesh, the kernels
 * and the sequence-parallel attention op, load the data, train. Rank 0 reports progress and writes
 * files. Exported by name so the threads transport can start it inside a worker.
 */
import type { World } from '../comm/types.js';
import { DeviceMesh } from '../comm/mesh.js';
import { cpus } from 'node:os';
import { selectKernels } from '../kernels/index.js';
import { setNativeThreads } from '../kernels/native/index.js';
import { prepareRankThread } from '../parallel/rank-thread.js';
import { createAttention } from '../parallel/index.js';
import { loadBrownCorpus, loadFileCorpus } from './data.js';
import { runSeqLen, type TrainOptions } from './options.js';
import { Progress } from './progress.js';
import { trainRank } from './trainer.js';
import { gradCommOf } from './zero.js';

export interface RankArgs {
  options: TrainOptions;
  /** Return the final parameters (as float64) from every rank, for tests. */
  returnParams?: boolean;
}

export interface RankResult {
  rank: number;
  losses: number[];
  valBpb: number | null;
  peakBytes: number;
  backend: string;
  params?: Float64Array;
}

export async function trainEntry(world: World, args: RankArgs): Promise<RankResult> {
  const o = args.options;
  const ulysses = o.spScheme === 'hybrid' ? o.ulysses : 1;
  const mesh = DeviceMesh.create({ dp: o.dp, sp: o.sp, tp: 1, ulysses, ring: o.sp / ulysses }, world);
  const sel = selectKernels(o.backend);
  const cores = cpus().length;
  // One worker per core when there are enough cores; intra-op threads only for a lone rank.
  prepareRankThread(world);
  setNativeThreads(o.threads > 0 ? o.threads : world.size === 1 ? Math.min(8, cores) : 1);
  if (sel.warning && world.rank === 0 && !o.quiet) process.stderr.write(`seqpar: ${sel.warning}\n`);
  const attn = createAttention(o.spScheme, { sp: mesh.group('sp'), ulysses: mesh.group('ulysses'), ring: mesh.group('ring') }, sel.kernels, { S: runSeqLen(o), realS: o.seqLen, shared: o.sharedAttention });
  const corpus = o.data ? loadFileCorpus(o.data) : loadBrownCorpus();
  const every = o.logEvery > 1 ? o.logEvery : Math.max(1, Math.round(o.steps / 30));
  const progress = world.rank === 0 && !o.quiet ? new Progress(process.stderr, every, false) : null;
  const grads = gradCommOf(world.group);
  const r = await trainRank(
    o,
    corpus,
    {
      kernels: sel.kernels,
      rank: world.rank,
      dpRank: mesh.group('dp').rank,
      dp: o.dp,
      spRank: mesh.group('sp').rank,
      sp: o.sp,
      attn,
      // Every rank holds a share of the loss (sp shards × dp replicas): one sum over the world.
      allReduceSum: grads.allReduceSum,
      gradComm: grads,
    },
    progress ? (m, total) => progress.update(m, total) : undefined,
  );
  return {
    rank: world.rank,
    losses: r.losses,
    valBpb: r.valBpb,
    peakBytes: r.peakBytes,
    backend: sel.kernels.name,
    params: args.returnParams ? Float64Array.from(r.params) : undefined,
  };
}
