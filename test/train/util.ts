/** Tiny training setups shared by the training tests. */
import { DEFAULT_OPTIONS, type TrainOptions } from '../../src/train/options.js';
import type { Corpus } from '../../src/train/data.js';
import { trainRank, type TrainResult } from '../../src/train/trainer.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { createLocalAttention } from '../../src/parallel/local.js';
import { Rng } from '../../src/tensor/rng.js';
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { expectAllClose } from '../helpers.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tinyOptions(over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    ...DEFAULT_OPTIONS,
    steps: 6,
    seqLen: 16,
    batch: 2,
    width: 16,
    layers: 2,
    heads: 2,
    kvHeads: 2,
    ffn: 32,
    warmup: 2,
    lr: 1e-2,
    evalEvery: 3,
    evalBatches: 1,
    quiet: true,
    ...over,
  };
}

/** A small synthetic corpus with structure (repeated phrases) so losses move. */
export function tinyCorpus(seed = 3): Corpus {
  const words = ['the ', 'ring ', 'attention ', 'splits ', 'a ', 'sequence ', 'across ', 'ranks. '];
  const rng = new Rng(seed);
  const mk = (n: number) => {
    let s = '';
    while (s.length < n) s += words[rng.int(words.length)];
    return new TextEncoder().encode(s.slice(0, n));
  };
  return { name: 'tiny', train: mk(4000), val: mk(600) };
}

export async function trainLocal(o: TrainOptions, corpus: Corpus = tinyCorpus()): Promise<TrainResult> {
  const attn = createLocalAttention(jsKernels, o.seqLen);
  return trainRank(o, corpus, { kernels: jsKernels, rank: 0, dpRank: 0, dp: 1, spRank: 0, sp: 1, attn, allReduceSum: async () => {} });
}

/**
 * tinyCorpus as a --data file (train bytes then validation bytes) in a temporary directory for
 * the enclosing test file: created before its tests, removed after. Read `.path` inside a test.
 */
export function tinyCorpusFile(prefix: string): { readonly dir: string; readonly path: string } {
  const f = { dir: '', path: '' };
  before(() => {
    f.dir = mkdtempSync(join(tmpdir(), prefix));
    f.path = join(f.dir, 'data.txt');
    const c = tinyCorpus();
    writeFileSync(f.path, Buffer.concat([Buffer.from(c.train), Buffer.from(c.val)]));
  });
  after(() => rmSync(f.dir, { recursive: true, force: true }));
  return f;
}

/** One rank's result of launchTraining with returnParams. */
interface RankRun {
  rank: number;
  losses: number[];
  params?: Float64Array | Float32Array | null;
  valBpb?: number | null;
}

/**
 * Every rank of `res` trained exactly like `ref` (float64): every step's loss (rel 1e-10), the
 * final weights, and (with `val`) the validation bits/byte.
 */
export function expectSameTraining(res: readonly RankRun[], ref: RankRun, what: string, val = true): void {
  for (const r of res) {
    expectAllClose(r.losses, ref.losses, { rtol: 1e-10 }, `${what} losses (rank ${r.rank})`);
    expectAllClose(r.params!, ref.params!, { rtol: 1e-10, atol: 1e-12 }, `${what} weights (rank ${r.rank})`);
    if (val) assert.ok(Math.abs(r.valBpb! - ref.valBpb!) < 1e-10, `${what} validation ${r.valBpb} vs ${ref.valBpb} (rank ${r.rank})`);
  }
}
