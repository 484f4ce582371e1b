/** Multi-rank training launcher (filled in with the comm layer). */
import type { TrainOptions } from './options.js';
import type { StepMetrics } from './trainer.js';

export async function launchTraining(o: TrainOptions, _onStep: (m: StepMetrics, total: number) => void): Promise<{ valBpb: number | null; peakBytes: number; losses: number[] }> {
  throw new Error(`--ranks ${o.ranks}: multi-rank training is not available yet`);
}
