/**
 * Strict flag parsing for `seqpar train`: --name value, --name=value, boolean switches, and
 * --config FILE.json with the same keys (kebab-case or camelCase). Unknown flags and malformed
 * values throw UsageError (exit code 2, one line).
 */
import { existsSync, readFileSync } from 'node:fs';
import { DEFAULT_OPTIONS, flagOf, type TrainOptions } from '../train/options.js';

export class UsageError extends Error {}

type Kind = 'int' | 'num' | 'str' | 'bool' | 'path';
const KIND: Record<keyof TrainOptions, Kind> = {
  steps: 'int', seqLen: 'int', batch: 'int', lr: 'num', minLrFrac: 'num', warmup: 'int', gradAccum: 'int',
  clip: 'num', weightDecay: 'num', beta1: 'num', beta2: 'num', width: 'int', layers: 'int', heads: 'int',
  kvHeads: 'int', ffn: 'int', norm: 'str', activation: 'str', tiedHead: 'bool', bias: 'bool', dtype: 'str',
  data: 'path', out: 'path', resume: 'path', seed: 'int', evalEvery: 'int', evalBatches: 'int',
  checkpointEvery: 'int', ckptActivations: 'bool', backend: 'str', threads: 'int', ranks: 'int',
  transport: 'str', sp: 'int', spScheme: 'str', dp: 'int', ulysses: 'int', logEvery: 'int', quiet: 'bool',
  commTimeout: 'num', pad: 'bool', window: 'int', docSep: 'int', shardOptimizer: 'bool', sharedAttention: 'bool',
};

const BY_FLAG = new Map<string, keyof TrainOptions>(Object.keys(KIND).map((k) => [flagOf(k).slice(2), k as keyof TrainOptions]));

function keyOf(name: string, where: string): keyof TrainOptions {
  const k = BY_FLAG.get(name) ?? (name in KIND ? (name as keyof TrainOptions) : undefined);
  if (!k) throw new UsageError(`${where}: unknown option '${name}' (see seqpar train --help)`);
  return k;
}

function convert(k: keyof TrainOptions, raw: unknown, where: string): unknown {
  const kind = KIND[k];
  const bad = (what: string) => new UsageError(`${where === 'cli' ? flagOf(k) : `${where}: ${k}`} ${String(raw)}: must be ${what}`);
  if (kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw bad('true or false');
  }
  if (kind === 'int' || kind === 'num') {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!Number.isFinite(n)) throw bad(kind === 'int' ? 'an integer' : 'a number');
    if (kind === 'int' && !Number.isInteger(n)) throw bad('an integer');
    return n;
  }
  if (typeof raw !== 'string' || raw === '') throw bad('a non-empty string');
  return raw;
}

export interface ParsedTrainArgs {
  options: TrainOptions;
  /** Options the user set explicitly (flags or config file), e.g. to override a checkpoint's. */
  explicit: Set<keyof TrainOptions>;
  help: boolean;
}

export function parseTrainArgs(argv: readonly string[]): ParsedTrainArgs {
  const opts: TrainOptions = { ...DEFAULT_OPTIONS };
  const explicit = new Set<keyof TrainOptions>();
  const cli: [keyof TrainOptions, unknown][] = [];
  let config: string | null = null;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument '${a}' (see seqpar train --help)`);
    const eq = a.indexOf('=');
    let name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let value: string | undefined = eq >= 0 ? a.slice(eq + 1) : undefined;
    if (name === 'config') {
      config = value ?? argv[++i] ?? '';
      if (!config) throw new UsageError('--config: expects a FILE.json');
      continue;
    }
    let negated = false;
    if (name.startsWith('no-') && !BY_FLAG.has(name) && BY_FLAG.has(name.slice(3))) {
      name = name.slice(3);
      negated = true;
    }
    const k = BY_FLAG.get(name);
    if (!k) throw new UsageError(`unknown option --${name} (see seqpar train --help)`);
    if (KIND[k] === 'bool') {
      cli.push([k, negated ? false : value === undefined ? true : convert(k, value, 'cli')]);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`${flagOf(k)}: expects a value`);
    }
    cli.push([k, convert(k, value, 'cli')]);
  }
  if (config !== null) {
    if (!existsSync(config)) throw new UsageError(`--config ${config}: no such file`);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(config, 'utf8'));
    } catch {
      throw new UsageError(`--config ${config}: not valid JSON`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`--config ${config}: must hold a JSON object`);
    for (const [name, v] of Object.entries(json)) {
      const k = keyOf(name, `--config ${config}`);
      (opts as unknown as Record<string, unknown>)[k] = v === null && KIND[k] === 'path' ? null : convert(k, v, `--config ${config}`);
      explicit.add(k);
    }
  }
  for (const [k, v] of cli) {
    (opts as unknown as Record<string, unknown>)[k] = v;
    explicit.add(k);
  }
  // --kv-heads defaults to --heads (plain multi-head attention) unless given.
  if (explicit.has('heads') && !explicit.has('kvHeads')) opts.kvHeads = opts.heads;
  return { options: opts, explicit, help };
}

export const TRAIN_HELP = `Usage: seqpar train [options]

Trains a byte-level GPT (vocab 256) with RoPE on the embedded Brown corpus or --data FILE.

Run
  --steps N            optimizer steps (${DEFAULT_OPTIONS.steps})
  --seq-len S          tokens per sequence (${DEFAULT_OPTIONS.seqLen})
  --batch B            sequences per micro-batch per data-parallel rank (${DEFAULT_OPTIONS.batch})
  --grad-accum K       micro-batches per step (${DEFAULT_OPTIONS.gradAccum})
  --dtype T            float32|float64 (${DEFAULT_OPTIONS.dtype})
  --seed N             initialisation and data seed (${DEFAULT_OPTIONS.seed})
  --data FILE          train on any file's bytes instead of the embedded corpus
  --out DIR            write metrics.jsonl and checkpoints to DIR
  --resume DIR         continue exactly from DIR (a run dir or a ckpt-* dir)
  --checkpoint-every N also checkpoint every N steps (the last step always is)
  --eval-every N       validation bits/byte every N steps (${DEFAULT_OPTIONS.evalEvery}; 0 = only at the end)
  --eval-batches N     validation micro-batches per evaluation (${DEFAULT_OPTIONS.evalBatches})
  --config FILE.json   any of these options as JSON keys (flags given on the command line win)
Model
  --width C  --layers L  --heads H  --kv-heads G (default H)  --ffn F
  --norm layernorm|rmsnorm   --activation gelu|swiglu   --tied-head   --no-bias
  --window W           sliding-window attention: each token attends itself and the W before it (0: off)
  --doc-sep BYTE       packed documents: BYTE (0-255, e.g. 10 for newline) ends a document; attention
                       stays within documents and RoPE restarts at each (needs --batch 1)
  --ckpt-activations   recompute each block in backward (activation checkpointing)
Optimizer
  --lr X (${DEFAULT_OPTIONS.lr})  --warmup N (${DEFAULT_OPTIONS.warmup})  --min-lr-frac X (${DEFAULT_OPTIONS.minLrFrac})
  --clip X (${DEFAULT_OPTIONS.clip})  --weight-decay X (${DEFAULT_OPTIONS.weightDecay})  --beta1 X  --beta2 X
  --no-shard-optimizer every rank keeps all of AdamW's state and updates every parameter (default:
                       with several ranks each updates 1/W of them, ZeRO-1)
Parallelism
  --backend auto|js|native   kernels (auto: native when the addon loads)
  --threads N          intra-op threads of the native backend (default: all cores for one rank, 1 per rank)
  --ranks N (default dp × sp)  --transport inproc|threads  --dp N  --sp N
  --sp-scheme ulysses|ring|zigzag|stripe|rsa|allgather|hybrid  --ulysses U (hybrid: U × ring)
  --pad                pad a --seq-len the scheme's layout does not split (to the next one it does;
                       the padding has no targets and no attention) instead of failing
  --no-shared-attention  ulysses: exchange heads with all-to-alls even where the ranks share memory
                       (default there: the kernels run on every member's tensors in place)
  --comm-timeout SEC   a collective waiting longer fails, naming the ranks that did not arrive (600; 0 = never)
Output
  --log-every N  --quiet
`;
