/**
 * Times one training step (forward + backward + AdamW) of the reference model — byte-level GPT,
 * width 256, 4 layers, 8 heads, FFN 1024, RoPE, untied head, batch 1 — at several sequence lengths
 * on one rank. Checks the step first: the initial loss must be ln(256) ± 0.5 and the gradients
 * finite (and equal to the js backend's on a short sequence when another backend is timed).
 */
import { GPT } from '../../src/model/gpt.js';
import { DEFAULT_CONFIG, paramCount, type GPTConfig } from '../../src/model/config.js';
import { Arena } from '../../src/tensor/arena.js';
import type { Kernels } from '../../src/kernels/types.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { createLocalAttention } from '../../src/parallel/local.js';
import { AdamW } from '../../src/train/optim.js';
import { Rng } from '../../src/tensor/rng.js';
import { appendResult, median, timeIt } from '../util.js';

export const REFERENCE_MODEL: GPTConfig = { ...DEFAULT_CONFIG, vocab: 256, width: 256, layers: 4, heads: 8, kvHeads: 8, ffn: 1024, tiedHead: false };

/** Training FLOPs of one step: 6·params·N for the dense part + causal attention fwd+bwd (14·N²·C/2 per layer). */
export function stepFlops(c: GPTConfig, N: number): number {
  const dense = 6 * (paramCount(c) - c.vocab * c.width) * N; // the embedding lookup is not a matmul
  const attn = c.layers * 14 * N * N * c.width * 0.5;
  return dense + attn;
}

/** The modules a step is built from: this tree's, or another revision's build (bench/e2e/ab). */
export interface StepModules {
  GPT: typeof GPT;
  Arena: typeof Arena;
  AdamW: typeof AdamW;
  Rng: typeof Rng;
  createLocalAttention: typeof createLocalAttention;
}
const HERE: StepModules = { GPT, Arena, AdamW, Rng, createLocalAttention };

/** One rank's reference-model step on N random bytes; `step()` returns the mean loss. */
export async function buildStep(k: Kernels, N: number, seed = 5, m: StepModules = HERE) {
  const arena = new m.Arena('float32');
  const model = new m.GPT({ config: REFERENCE_MODEL, kernels: k, arena, dtype: 'float32', rows: { B: 1, T: N } });
  model.store.init(model.params, seed);
  const opt = new m.AdamW(model.store, arena, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }, model.params);
  const rng = new m.Rng(seed);
  const tokens = Int32Array.from({ length: N }, () => rng.int(256));
  const targets = Int32Array.from({ length: N }, () => rng.int(256));
  const attn = m.createLocalAttention(k, N);
  const pos = attn.layout.positions(0);
  const step = async () => {
    model.grads.fill(0);
    const r = await model.forward({ tokens, targets, pos, S: N, attn });
    await model.backward(1 / r.count);
    opt.update(k, model.params, model.grads, 1e-4);
    return r.lossSum / r.count;
  };
  return { model, step, arena };
}

export async function checkStep(k: Kernels, N: number): Promise<void> {
  const { model, step } = await buildStep(k, N);
  const loss = await step();
  // A fresh model predicts nearly uniform bytes: ln 256 plus a little for the logits' spread.
  if (!(Math.abs(loss - Math.log(256)) < 0.5)) throw new Error(`train-step check: initial loss ${loss}, expected ≈ ${Math.log(256).toFixed(3)}`);
  for (const g of model.grads) if (!Number.isFinite(g)) throw new Error('train-step check: non-finite gradient');
  if (k !== jsKernels) {
    const ref = await buildStep(jsKernels, N);
    await ref.step();
    let num = 0;
    let den = 0;
    for (let i = 0; i < model.grads.length; i++) {
      num += (model.grads[i]! - ref.model.grads[i]!) ** 2;
      den += ref.model.grads[i]! ** 2;
    }
    const rel = Math.sqrt(num / den);
    if (!(rel < 1e-3)) throw new Error(`train-step check: ${k.name} gradients differ from js by ${rel.toExponential(2)} (relative L2)`);
  }
}

export async function runTrainStepBench(o: { kernels: Kernels; lengths: number[]; reps?: number; warmup?: number; smoke?: boolean; threads?: number; note?: string }): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  await checkStep(o.kernels, o.smoke ? 32 : 64);
  for (const N of o.smoke ? [64] : o.lengths) {
    const { step, arena } = await buildStep(o.kernels, N);
    const secs = await timeIt(step, o.smoke ? 1 : (o.reps ?? 3), o.smoke ? 0 : (o.warmup ?? 1));
    const sec = median(secs);
    const flops = stepFlops(REFERENCE_MODEL, N);
    const row = {
      bench: 'train-step',
      backend: o.kernels.name,
      threads: o.threads ?? 1,
      model: 'C256-L4-H8-F1024',
      N,
      medianSec: sec,
      allSec: secs,
      tokensPerSec: N / sec,
      gflops: flops / sec / 1e9,
      flops,
      peakBytes: arena.stats().peakBytes,
      smoke: !!o.smoke,
      warmup: o.smoke ? 0 : (o.warmup ?? 1),
      note: o.note,
    };
    rows.push(row);
    if (!o.smoke) appendResult('train-step', row);
  }
  return rows;
}
