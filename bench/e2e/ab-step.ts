/**
 * One-process A/B of the model code of two revisions (bench/e2e/ab/ab-step.sh builds the base):
 * the reference model's one-rank training step built from the base revision's modules and from
 * this tree's, both on this tree's kernels, steps alternating pair by pair so a shared host's
 * drift hits both alike. Checks first that one step of each gives the same loss and parameters
 * (relative 1e-5), then reports the median over pairs of new time / old time.
 *   node dist/bench/e2e/ab-step.js OLD_DIST_ROOT [N] [PAIRS]
 */
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { selectKernels } from '../../src/kernels/index.js';
import { buildStep, type StepModules } from './train-step.js';
import { median } from '../util.js';

async function modulesOf(distRoot: string): Promise<StepModules> {
  const imp = (p: string) => import(pathToFileURL(join(distRoot, p)).href);
  const [gpt, arena, optim, rng, local] = await Promise.all([
    imp('src/model/gpt.js'), imp('src/tensor/arena.js'), imp('src/train/optim.js'), imp('src/tensor/rng.js'), imp('src/parallel/local.js'),
  ]);
  return { GPT: gpt.GPT, Arena: arena.Arena, AdamW: optim.AdamW, Rng: rng.Rng, createLocalAttention: local.createLocalAttention };
}

export async function abStep(oldDist: string, N: number, pairs: number): Promise<Record<string, unknown>> {
  const { kernels } = selectKernels('auto');
  const A = await buildStep(kernels, N, 5, await modulesOf(oldDist));
  const B = await buildStep(kernels, N, 5);
  const la = await A.step(), lb = await B.step();
  let d = 0, m = 0;
  for (let i = 0; i < A.model.params.length; i++) {
    d = Math.max(d, Math.abs(A.model.params[i]! - B.model.params[i]!));
    m = Math.max(m, Math.abs(A.model.params[i]!));
  }
  const relDiff = Math.max(d / (m || 1), Math.abs(la - lb) / Math.abs(la));
  const t: [number[], number[]] = [[], []], ratios: number[] = [];
  for (let p = 0; p < pairs; p++) {
    const dt = [0, 0];
    for (const w of p % 2 ? [1, 0] : [0, 1]) {
      const t0 = performance.now();
      await (w ? B : A).step();
      dt[w] = (performance.now() - t0) / 1000;
      t[w]!.push(dt[w]!);
    }
    ratios.push(dt[1]! / dt[0]!);
  }
  return { bench: 'train-step-ab', backend: kernels.name, N, pairs, newOverOld: median(ratios), oldSec: median(t[0]), newSec: median(t[1]), relDiff, checkOk: relDiff < 1e-5 };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [oldDist, N, pairs] = process.argv.slice(2);
  if (!oldDist) {
    console.error('usage: node dist/bench/e2e/ab-step.js OLD_DIST_ROOT [N] [PAIRS]');
    process.exit(2);
  }
  const r = await abStep(oldDist, Number(N ?? 4096), Number(pairs ?? 10));
  console.log(JSON.stringify(r));
  if (!r.checkOk) process.exit(1);
}
