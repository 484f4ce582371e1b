/**
 * Packed documents in the model: one forward/backward over a sequence of several documents (with
 * `docs`) gives each document's loss and parameter gradients exactly as that document alone, as
 * its own sequence from position 0, float64. (RoPE is relative, so this checks the attention mask;
 * the RoPE restart itself is checked on its positions.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GPT, documentPositions } from '../../src/model/gpt.js';
import { DEFAULT_CONFIG, type GPTConfig } from '../../src/model/config.js';
import { Arena } from '../../src/tensor/arena.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { createLocalAttention } from '../../src/parallel/local.js';
import { expectAllClose, randInts } from '../helpers.js';

const cfg: GPTConfig = { ...DEFAULT_CONFIG, vocab: 11, width: 16, layers: 2, heads: 4, kvHeads: 2, ffn: 12, norm: 'rmsnorm', activation: 'swiglu' };

/** Loss sum and parameter gradients (of the loss sum) of one sequence on its own model instance. */
async function run(tokens: Int32Array, targets: Int32Array, docs?: Int32Array) {
  const T = tokens.length;
  const model = new GPT({ config: cfg, kernels: jsKernels, arena: new Arena('float64'), dtype: 'float64', rows: { B: 1, T } });
  model.store.init(model.params, 3);
  const attn = createLocalAttention(jsKernels, T);
  const r = await model.forward({ tokens, targets, pos: attn.layout.positions(0), S: T, attn, docs });
  model.grads.fill(0);
  await model.backward(1);
  return { lossSum: r.lossSum, count: r.count, grads: Float64Array.from(model.grads) };
}

describe('packed documents in the model [js, float64]', () => {
  it('documentPositions: each position minus its document start; padding 0', () => {
    const docs = Int32Array.from([0, 0, 0, 1, 2, 2, 2, 2]);
    assert.deepEqual(Array.from(documentPositions(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, -1]), docs)), [0, 1, 2, 0, 0, 1, 2, 3, 0]);
    assert.deepEqual(Array.from(documentPositions(Int32Array.from([7, 2, 4]), docs)), [3, 2, 0]);
  });

  it('a packed sequence of documents of 5, 1, 3 and 7 tokens: loss and gradients are the documents\' sums', async () => {
    const lens = [5, 1, 3, 7];
    const S = lens.reduce((a, b) => a + b, 0);
    const tokens = randInts(S, cfg.vocab, 1);
    const targets = randInts(S, cfg.vocab, 2);
    targets[6] = -1;  // an ignored target
    const docs = Int32Array.from(lens.flatMap((n, d) => Array<number>(n).fill(d)));
    const packed = await run(tokens, targets, docs);
    let lossSum = 0;
    let count = 0;
    const grads = new Float64Array(packed.grads.length);
    for (let d = 0, a = 0; d < lens.length; a += lens[d]!, d++) {
      const one = await run(tokens.slice(a, a + lens[d]!), targets.slice(a, a + lens[d]!));
      lossSum += one.lossSum;
      count += one.count;
      for (let i = 0; i < grads.length; i++) grads[i] = grads[i]! + one.grads[i]!;
    }
    assert.equal(packed.count, count);
    expectAllClose([packed.lossSum], [lossSum], { rtol: 1e-12 }, 'loss sum');
    expectAllClose(packed.grads, grads, { rtol: 1e-10, atol: 1e-12 }, 'parameter gradients');
    // and without docs the packed sequence is one long document: a different loss
    const plain = await run(tokens, targets);
    assert.ok(Math.abs(plain.lossSum - lossSum) > 1e-6, 'documents made no difference');
  });
});
