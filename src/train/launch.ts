/** Starts a training job on N ranks (worker threads by default, or inproc) and gathers results. */
import { runRanks } from '../comm/run.js';
import { resolveOptions, type TrainOptions } from './options.js';
import type { RankArgs, RankResult } from './rank-entry.js';

export async function launchTraining(opts: TrainOptions, extra: Omit<RankArgs, 'options'> = {}): Promise<RankResult[]> {
  const o = resolveOptions(opts);
  const args: RankArgs = { options: o, ...extra };
  const entry = { module: new URL('./rank-entry.js', import.meta.url), fn: 'trainEntry', args };
  // One rank needs no workers: run it in this thread.
  const transport = o.ranks === 1 ? 'inproc' : o.transport;
  return runRanks<RankResult>(o.ranks, entry, { transport, timeoutMs: Math.round(o.commTimeout * 1000) });
}
