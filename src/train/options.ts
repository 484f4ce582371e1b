/**
 * Training options: one flat record shared by the CLI flags, --config FILE.json and the
 * checkpoint sidecar. Every value is validated here with a one-line error naming the option.
 */
import { DEFAULT_CONFIG, validateConfig, type GPTConfig } from '../model/config.js';
import { paddedLength } from '../parallel/index.js';

export interface TrainOptions {
  steps: number;
  seqLen: number;
  batch: number;
  lr: number;
  minLrFrac: number;
  warmup: number;
  gradAccum: number;
  clip: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  width: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  norm: GPTConfig['norm'];
  activation: GPTConfig['activation'];
  tiedHead: boolean;
  bias: boolean;
  dtype: 'float32' | 'float64';
  data: string | null;
  out: string | null;
  resume: string | null;
  seed: number;
  evalEvery: number;
  evalBatches: number;
  checkpointEvery: number;
  ckptActivations: boolean;
  backend: 'auto' | 'js' | 'native';
  threads: number;
  ranks: number;
  transport: 'inproc' | 'threads';
  sp: number;
  spScheme: 'local' | 'ulysses' | 'ring' | 'zigzag' | 'stripe' | 'rsa' | 'allgather' | 'hybrid';
  dp: number;
  ulysses: number;
  logEvery: number;
  quiet: boolean;
  /** Seconds a collective may wait for the other ranks before failing with who is missing (0 = never). */
  commTimeout: number;
  /**
   * Pad each sequence at its end to the next length the --sp-scheme layout splits (padding gets
   * no targets and is masked out of attention); off: such a --seq-len is an error.
   */
  pad: boolean;
  /** Sliding-window attention over the `window` previous tokens and itself; 0: full causal attention. */
  window: number;
  /**
   * Packed documents: a byte (0–255) that ends a document; attention stays within documents and
   * RoPE restarts at each. −1: one document per sequence. Needs --batch 1.
   */
  docSep: number;
  /**
   * With more than one rank, each keeps AdamW state for and updates 1/W of the parameters
   * (ZeRO-1: gradients reduce-scattered, parameters all-gathered); off: every rank a full replica.
   */
  shardOptimizer: boolean;
  /**
   * Ulysses on the threads or inproc transport: run the attention kernels on the members' tensors
   * in place instead of exchanging heads (parallel/ulysses-shared.ts); off: the all-to-alls.
   */
  sharedAttention: boolean;
}

/** Defaults sized so `npx seqpar train` finishes in a few minutes on 2 cores with the native backend. */
export const DEFAULT_OPTIONS: TrainOptions = {
  steps: 250,
  seqLen: 512,
  batch: 8,
  lr: 2e-3,
  minLrFrac: 0.1,
  warmup: 20,
  gradAccum: 1,
  clip: 1.0,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  width: 192,
  layers: 4,
  heads: 6,
  kvHeads: 6,
  ffn: 768,
  norm: 'layernorm',
  activation: 'gelu',
  tiedHead: false,
  bias: true,
  dtype: 'float32',
  data: null,
  out: null,
  resume: null,
  seed: 1337,
  evalEvery: 50,
  evalBatches: 4,
  checkpointEvery: 0,
  ckptActivations: false,
  backend: 'auto',
  threads: 0,
  ranks: 0,
  transport: 'threads',
  sp: 1,
  spScheme: 'local',
  dp: 1,
  ulysses: 1,
  logEvery: 1,
  quiet: false,
  commTimeout: 600,
  pad: false,
  window: 0,
  docSep: -1,
  shardOptimizer: true,
  sharedAttention: true,
};

export const CHOICES: Partial<Record<keyof TrainOptions, readonly string[]>> = {
  norm: ['layernorm', 'rmsnorm'],
  activation: ['gelu', 'swiglu'],
  dtype: ['float32', 'float64'],
  backend: ['auto', 'js', 'native'],
  transport: ['inproc', 'threads'],
  spScheme: ['local', 'ulysses', 'ring', 'zigzag', 'stripe', 'rsa', 'allgather', 'hybrid'],
};

const POSITIVE_INT: (keyof TrainOptions)[] = ['steps', 'seqLen', 'batch', 'gradAccum', 'width', 'layers', 'heads', 'kvHeads', 'ffn', 'evalBatches', 'sp', 'dp', 'ulysses', 'logEvery'];
/** threads 0 = auto (all cores for one rank, 1 per rank otherwise); ranks 0 = dp × sp. */
const NONNEG_INT: (keyof TrainOptions)[] = ['window', 'warmup', 'evalEvery', 'checkpointEvery', 'seed', 'threads', 'ranks'];

/** camelCase option → its CLI flag, for messages. */
export function flagOf(k: string): string {
  return '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function modelConfigOf(o: TrainOptions): GPTConfig {
  return {
    ...DEFAULT_CONFIG,
    width: o.width,
    layers: o.layers,
    heads: o.heads,
    kvHeads: o.kvHeads,
    ffn: o.ffn,
    norm: o.norm,
    activation: o.activation,
    tiedHead: o.tiedHead,
    bias: o.bias,
    ...(o.window > 0 ? { window: o.window } : {}),
  };
}

/** Throws `--flag value: why` for the first invalid option. */
export function validateOptions(o: TrainOptions): void {
  const f = flagOf;
  for (const k of POSITIVE_INT) {
    const v = o[k] as number;
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${f(k)} ${v}: must be a positive integer`);
  }
  for (const k of NONNEG_INT) {
    const v = o[k] as number;
    if (!Number.isInteger(v) || v < 0) throw new Error(`${f(k)} ${v}: must be a non-negative integer`);
  }
  for (const [k, allowed] of Object.entries(CHOICES)) {
    const v = o[k as keyof TrainOptions] as string;
    if (!allowed!.includes(v)) throw new Error(`${f(k)} ${v}: must be one of ${allowed!.join('|')}`);
  }
  const pos = (k: keyof TrainOptions) => {
    const v = o[k] as number;
    if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new Error(`${f(k)} ${v}: must be a positive number`);
  };
  pos('lr');
  for (const k of ['clip', 'weightDecay', 'minLrFrac', 'commTimeout'] as const) {
    if (!(Number.isFinite(o[k]) && o[k] >= 0)) throw new Error(`${f(k)} ${o[k]}: must be a non-negative number`);
  }
  for (const k of ['beta1', 'beta2'] as const) {
    if (!(o[k] >= 0 && o[k] < 1)) throw new Error(`${f(k)} ${o[k]}: must be in [0, 1)`);
  }
  if (!(Number.isInteger(o.docSep) && o.docSep >= -1 && o.docSep <= 255)) throw new Error(`${f('docSep')} ${o.docSep}: must be a byte value 0-255 (or -1: off)`);
  if (o.docSep >= 0 && o.batch !== 1) throw new Error(`${f('docSep')} ${o.docSep}: needs --batch 1 (the rows of a micro-batch share positions; --grad-accum adds sequences), got --batch ${o.batch}`);
  if (o.width % o.heads !== 0) throw new Error(`--heads ${o.heads}: must divide --width ${o.width}`);
  if (o.heads % o.kvHeads !== 0) throw new Error(`--kv-heads ${o.kvHeads}: must divide --heads ${o.heads}`);
  if ((o.width / o.heads) % 2 !== 0) throw new Error(`--width ${o.width} / --heads ${o.heads} = head dim ${o.width / o.heads}: must be even (RoPE)`);
  if (o.ranks !== 0 && o.dp * o.sp !== o.ranks) throw new Error(`--ranks ${o.ranks}: must equal --dp ${o.dp} × --sp ${o.sp} = ${o.dp * o.sp}`);
  if (o.sp === 1 && o.spScheme !== 'local' && o.ranks === 1) {
    // A scheme over one rank is the local kernel; allowed (P = 1 degenerates exactly).
  }
  if (o.sp > 1 && o.spScheme === 'local') throw new Error(`--sp ${o.sp}: needs --sp-scheme (ulysses|ring|zigzag|stripe|rsa|allgather|hybrid)`);
  validateConfig(modelConfigOf(o));
}

/** Options with the automatic values (ranks 0 → dp × sp) filled in. */
export function resolveOptions(o: TrainOptions): TrainOptions {
  return { ...o, ranks: o.ranks === 0 ? o.dp * o.sp : o.ranks };
}

/** The length attention runs on: --seq-len, or with --pad the next length the scheme's layout splits. */
export function runSeqLen(o: Pick<TrainOptions, 'seqLen' | 'pad' | 'spScheme' | 'sp' | 'ulysses'>): number {
  if (!o.pad || o.spScheme === 'local') return o.seqLen;
  return paddedLength(o.spScheme, o.seqLen, o.sp, { ulysses: o.spScheme === 'hybrid' ? o.ulysses : undefined });
}
