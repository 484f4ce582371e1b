/** Package root: the library surface of seqpar. */
export { distributedAttention, type DistributedAttentionOptions } from './parallel/distributed.js';
export { createAttention, layoutFor, paddedLength, padLayout, ringSteps, validateScheme, cost, commPlan, SCHEMES, type SpGroups, type AttentionOptions } from './parallel/index.js';
export type { AttentionOp, AttnDims, AttnCost, SeqLayout, SchemeName } from './parallel/types.js';
export { runRanks, DeviceMesh, type World, type ProcessGroup, type CommLog, type CommRecord } from './comm/index.js';
export { selectKernels, availableBackends } from './kernels/index.js';
export { jsKernels } from './kernels/js/index.js';
export type { Kernels, AttnMask, AttnBlockDims } from './kernels/types.js';
export { GPT, IGNORE_INDEX } from './model/gpt.js';
export { DEFAULT_CONFIG, paramSpecs, paramCount, type GPTConfig } from './model/config.js';
export { trainRank, type RankEnv, type StepMetrics } from './train/trainer.js';
export { launchTraining } from './train/launch.js';
export { DEFAULT_OPTIONS, type TrainOptions } from './train/options.js';
export { saveCheckpoint, loadCheckpoint } from './train/checkpoint.js';
export { Arena, Rng } from './tensor/index.js';
