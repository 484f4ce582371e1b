/**
 * --window: sliding-window training under sequence parallelism equals single-device training with
 * the same window (float64: every loss, the final weights, validation), and the window matters:
 * the same run without it ends elsewhere. Bad values are one-line errors.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchTraining } from '../../src/train/launch.js';
import { validateOptions, type TrainOptions } from '../../src/train/options.js';
import { tinyOptions, tinyCorpusFile, expectSameTraining } from './util.js';

const corpusFile = tinyCorpusFile('seqpar-wintrain-');
const base = (over: Partial<TrainOptions>): TrainOptions =>
  tinyOptions({ data: corpusFile.path, seqLen: 16, heads: 4, kvHeads: 2, width: 16, steps: 4, evalEvery: 2, backend: 'js', transport: 'inproc', dtype: 'float64', window: 3, ...over });

describe('--window: sliding-window training equals single-device training', () => {
  let ref: Awaited<ReturnType<typeof launchTraining>>[number];
  before(async () => {
    [ref] = await launchTraining({ ...base({}), ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
  });

  for (const [scheme, sp, u] of [['zigzag', 2, 1], ['ulysses', 2, 1], ['ring', 4, 1], ['allgather', 2, 1], ['hybrid', 4, 2]] as const) {
    it(`${scheme} sp=${sp}: window 3, same losses, weights and validation (float64)`, async () => {
      const res = await launchTraining({ ...base({}), ranks: sp, sp, spScheme: scheme, ulysses: u }, { returnParams: true });
      expectSameTraining(res, ref, scheme);
    });
  }

  it('window × padding × activation checkpointing × dp: ring sp=2, dp=2, 15 tokens padded to 16, equals one rank with twice the batch', async () => {
    const o = base({ seqLen: 15 });
    const [one] = await launchTraining({ ...o, batch: 2 * o.batch, ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
    const res = await launchTraining({ ...o, pad: true, ckptActivations: true, ranks: 4, dp: 2, sp: 2, spScheme: 'ring' }, { returnParams: true });
    expectSameTraining(res, one!, `combined`, false);
  });

  it('the window changes training (a run without it ends at other weights)', async () => {
    const [full] = await launchTraining({ ...base({ window: 0 }), ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
    assert.ok(full!.params!.some((v, i) => Math.abs(v - ref.params![i]!) > 1e-6), 'window 3 trained like full causal attention');
  });

  it('a negative or fractional --window is an error naming it', () => {
    assert.throws(() => validateOptions(base({ window: -1 })), /--window -1: must be a non-negative integer/);
    assert.throws(() => validateOptions(base({ window: 1.5 })), /--window 1.5: must be a non-negative integer/);
  });
});
