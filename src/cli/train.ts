/**
 * `seqpar train`: validates everything (options, data, checkpoint) BEFORE writing anything, then
 * trains on one rank in-process or launches N ranks. Exit codes: 0 done, 2 invalid input, 1 failure.
 */
import { loadCheckpoint } from '../train/checkpoint.js';
import { loadBrownCorpus, loadFileCorpus, type Corpus } from '../train/data.js';
import { DEFAULT_OPTIONS, flagOf, resolveOptions, runSeqLen, validateOptions, type TrainOptions } from '../train/options.js';
import { launchTraining } from '../train/launch.js';
import { validateScheme } from '../parallel/index.js';
import { parseTrainArgs, TRAIN_HELP, UsageError } from './args.js';
import { formatBytes, formatSec } from '../train/progress.js';

const MODEL_KEYS: (keyof TrainOptions)[] = ['width', 'layers', 'heads', 'kvHeads', 'ffn', 'norm', 'activation', 'tiedHead', 'bias', 'dtype', 'window'];

/** Resolves options (flags, config, checkpoint) and loads the data; throws UsageError on bad input. */
export function prepareTraining(argv: readonly string[]): { options: TrainOptions; corpus: Corpus } | 'help' {
  const parsed = parseTrainArgs(argv);
  if (parsed.help) return 'help';
  let o = parsed.options;
  if (o.resume) {
    let ck;
    try {
      ck = loadCheckpoint(o.resume);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const saved = ck.state.train as unknown as TrainOptions;
    for (const k of MODEL_KEYS) {
      if (parsed.explicit.has(k) && (saved[k] ?? DEFAULT_OPTIONS[k]) !== o[k]) throw new UsageError(`${flagOf(k)} ${String(o[k])}: differs from the checkpoint's ${String(saved[k])}`);
    }
    // Options added after the checkpoint was written (--pad, --window) take their defaults.
    const merged = { ...DEFAULT_OPTIONS, ...saved } as TrainOptions;
    for (const k of parsed.explicit) (merged as unknown as Record<string, unknown>)[k] = o[k];
    merged.resume = o.resume;
    if (ck.state.step >= merged.steps) throw new UsageError(`--steps ${merged.steps}: the checkpoint is already at step ${ck.state.step}`);
    o = merged;
  }
  try {
    validateOptions(o);
    o = resolveOptions(o);
    if (o.spScheme !== 'local') validateScheme(o.spScheme, { S: runSeqLen(o), P: o.sp, H: o.heads, G: o.kvHeads, ulysses: o.spScheme === 'hybrid' ? o.ulysses : undefined });
  } catch (e) {
    const msg = (e as Error).message;
    // A length the layout does not split has a remedy: say so on the same line.
    throw new UsageError(/: S=\d+ not divisible by/.test(msg) && !o.pad ? `${msg} (--pad pads it to the next length that splits)` : msg);
  }
  let corpus: Corpus;
  try {
    corpus = o.data ? loadFileCorpus(o.data) : loadBrownCorpus();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const need = o.seqLen + 2;
  if (corpus.train.length < need || corpus.val.length < need) {
    throw new UsageError(`--seq-len ${o.seqLen}: data '${corpus.name}' has ${corpus.train.length} train / ${corpus.val.length} validation bytes, too few for one window`);
  }
  return { options: o, corpus };
}

export async function runTrainCommand(argv: readonly string[]): Promise<number> {
  let prep;
  try {
    prep = prepareTraining(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`seqpar train: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (prep === 'help') {
    process.stdout.write(TRAIN_HELP);
    return 0;
  }
  const { options: o, corpus } = prep;
  if (!o.quiet) {
    const what = o.ranks > 1 ? `${o.ranks} ranks (${o.transport}; dp=${o.dp}, sp=${o.sp} ${o.spScheme})` : 'one rank';
    process.stderr.write(`seqpar: training on ${corpus.name} (${formatBytes(corpus.train.length)} train), ${what}, ${o.dtype}\n`);
  }
  const t0 = performance.now();
  const results = await launchTraining(o);
  const result = results[0]!;
  const peakBytes = Math.max(...results.map((r) => r.peakBytes));
  const sec = (performance.now() - t0) / 1000;
  if (!o.quiet) {
    const last = result.losses[result.losses.length - 1];
    process.stderr.write(
      `seqpar: done in ${formatSec(sec)}: train loss ${last?.toFixed(4)}, validation ${result.valBpb?.toFixed(3)} bits/byte, peak ${formatBytes(peakBytes)} per rank (${result.backend} backend)${o.out ? `, wrote ${o.out}` : ''}\n`,
    );
  }
  return 0;
}
