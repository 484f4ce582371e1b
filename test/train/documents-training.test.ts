/**
 * --doc-sep: training on packed documents (every space-terminated word of the tiny corpus is a
 * document) under sequence parallelism equals single-device training with the same documents
 * (float64: every loss, the final weights, validation), and the documents matter: the same run
 * without them ends elsewhere. Bad values are one-line errors.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { launchTraining } from '../../src/train/launch.js';
import { validateOptions, type TrainOptions } from '../../src/train/options.js';
import { documentsOf } from '../../src/train/data.js';
import { tinyOptions, tinyCorpusFile, expectSameTraining } from './util.js';

const SPACE = 32;
const corpusFile = tinyCorpusFile('seqpar-doctrain-');
const base = (over: Partial<TrainOptions>): TrainOptions =>
  tinyOptions({ data: corpusFile.path, seqLen: 16, batch: 1, gradAccum: 2, heads: 4, kvHeads: 2, width: 16, steps: 4, evalEvery: 2, backend: 'js', transport: 'inproc', dtype: 'float64', docSep: SPACE, ...over });

describe('--doc-sep: packed-document training equals single-device training', () => {
  let ref: Awaited<ReturnType<typeof launchTraining>>[number];
  before(async () => {
    [ref] = await launchTraining({ ...base({}), ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
  });

  it('documentsOf: a separator ends its document', () => {
    const tokens = Int32Array.from([97, 32, 98, 99, 32, 32, 100]);
    assert.deepEqual(Array.from(documentsOf({ tokens, targets: tokens, B: 1, S: 7 }, 0, SPACE)), [0, 0, 1, 1, 1, 2, 3]);
  });

  for (const [scheme, sp, u] of [['zigzag', 2, 1], ['ulysses', 2, 1], ['ring', 4, 1], ['allgather', 2, 1], ['hybrid', 4, 2]] as const) {
    it(`${scheme} sp=${sp}: same losses, weights and validation (float64)`, async () => {
      const res = await launchTraining({ ...base({}), ranks: sp, sp, spScheme: scheme, ulysses: u }, { returnParams: true });
      expectSameTraining(res, ref, scheme);
    });
  }

  it('documents × padding × dp=2 × window: ring sp=2, 15 tokens padded to 16, equals single-device training', async () => {
    const o = base({ seqLen: 15, window: 4 });
    const [one] = await launchTraining({ ...o, gradAccum: 4, ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
    const res = await launchTraining({ ...o, pad: true, ranks: 4, dp: 2, sp: 2, spScheme: 'ring' }, { returnParams: true });
    expectSameTraining(res, one!, `combined`, false);
  });

  it('the documents change training (a run without them ends at other weights)', async () => {
    const [plain] = await launchTraining({ ...base({ docSep: -1 }), ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
    assert.ok(plain!.params!.some((v, i) => Math.abs(v - ref.params![i]!) > 1e-6), 'documents trained like one long sequence');
  });

  it('bad --doc-sep values and --batch > 1 are errors naming them', () => {
    assert.throws(() => validateOptions(base({ docSep: 256 })), /--doc-sep 256: must be a byte value 0-255 \(or -1: off\)/);
    assert.throws(() => validateOptions(base({ batch: 2 })), /--doc-sep 32: needs --batch 1/);
  });
});
