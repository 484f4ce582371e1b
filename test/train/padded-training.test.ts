/**
 * --pad: training on a --seq-len the scheme's layout does not split (13 tokens over 2, 3 or 4
 * ranks) equals single-device training on those 13 tokens: every step's loss, the final weights and
 * the validation bits/byte (float64, rel 1e-10), also composed with dp. Without --pad that length
 * is a one-line usage error.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchTraining } from '../../src/train/launch.js';
import { runSeqLen, type TrainOptions } from '../../src/train/options.js';
import { tinyOptions, tinyCorpusFile, expectSameTraining } from './util.js';

const corpusFile = tinyCorpusFile('seqpar-padtrain-');

const base = (over: Partial<TrainOptions>): TrainOptions =>
  tinyOptions({ data: corpusFile.path, seqLen: 13, heads: 4, kvHeads: 2, width: 16, steps: 4, evalEvery: 2, backend: 'js', transport: 'inproc', dtype: 'float64', ...over });

// scheme, sp, ulysses, the padded length attention runs on
const RUNS: [TrainOptions['spScheme'], number, number, number][] = [
  ['ulysses', 2, 1, 14],
  ['ring', 3, 1, 15],
  ['zigzag', 2, 1, 16],
  ['zigzag', 4, 1, 16],
  ['stripe', 3, 1, 15],
  ['rsa', 2, 1, 14],
  ['allgather', 2, 1, 14],
  ['hybrid', 4, 2, 16],
];

describe('--pad: padded sequence-parallel training equals single-device training', () => {
  let ref: Awaited<ReturnType<typeof launchTraining>>[number];
  before(async () => {
    [ref] = await launchTraining({ ...base({}), ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
  });

  for (const [scheme, sp, u, padded] of RUNS) {
    it(`${scheme} sp=${sp}${u > 1 ? ` (ulysses ${u})` : ''}: S=13 padded to ${padded}, same losses, weights and validation (float64)`, async () => {
      const o = { ...base({ pad: true }), ranks: sp, sp, spScheme: scheme, ulysses: u };
      assert.equal(runSeqLen(o), padded);
      const res = await launchTraining(o, { returnParams: true });
      expectSameTraining(res, ref, scheme);
    });
  }

  it('dp=2 × zigzag sp=2 padded equals one rank with twice the batch (float64)', async () => {
    const o = base({ pad: true });
    const [one] = await launchTraining({ ...o, batch: 2 * o.batch, ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
    const res = await launchTraining({ ...o, ranks: 4, dp: 2, sp: 2, spScheme: 'zigzag' }, { returnParams: true });
    expectSameTraining(res, one!, 'dp × zigzag padded', false);
  });

  it('local ignores --pad (one rank splits any length)', () => {
    assert.equal(runSeqLen({ seqLen: 13, pad: true, spScheme: 'local', sp: 1, ulysses: 1 }), 13);
  });
});
