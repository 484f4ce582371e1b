/** Whole-model gradients vs central finite differences on tiny float64 configs. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GPT } from '../../src/model/gpt.js';
import { DEFAULT_CONFIG, paramCount, type GPTConfig } from '../../src/model/config.js';
import { Arena } from '../../src/tensor/arena.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { createLocalAttention } from '../../src/parallel/local.js';
import { activationElements } from '../../src/model/sizes.js';
import { expectAllClose, randInts } from '../helpers.js';

const tiny = (over: Partial<GPTConfig>): GPTConfig => ({
  ...DEFAULT_CONFIG,
  vocab: 11,
  width: 8,
  layers: 2,
  heads: 2,
  kvHeads: 2,
  ffn: 12,
  ...over,
});

const CASES: [string, Partial<GPTConfig>, boolean][] = [
  ['layernorm + gelu + biases, untied', {}, false],
  ['rmsnorm + swiglu, GQA (H=4, G=2), tied head, no bias', { norm: 'rmsnorm', activation: 'swiglu', heads: 4, kvHeads: 2, tiedHead: true, bias: false, width: 16 }, false],
  ['activation checkpointing, MQA (G=1)', { heads: 2, kvHeads: 1 }, true],
];

describe('GPT forward/backward [js, float64]', () => {
  for (const [name, over, ckpt] of CASES) {
    it(`every parameter gradient equals finite differences: ${name}`, async () => {
      const cfg = tiny(over);
      const B = 2;
      const T = 5;
      const arena = new Arena('float64');
      const model = new GPT({ config: cfg, kernels: jsKernels, arena, dtype: 'float64', rows: { B, T }, checkpoint: ckpt });
      model.store.init(model.params, 7);
      // Perturb norms/biases away from 1/0 so their gradients are generic.
      for (let i = 0; i < model.params.length; i++) model.params[i] = model.params[i]! + 0.05 * Math.sin(i * 1.7);
      const tokens = randInts(B * T, cfg.vocab, 1);
      const targets = randInts(B * T, cfg.vocab, 2);
      targets[3] = -1; // an ignored target
      const attn = createLocalAttention(jsKernels, T);
      const pos = attn.layout.positions(0);
      const inp = { tokens, targets, pos, S: T, attn };
      const lossOf = async () => {
        const r = await model.forward(inp);
        return r.lossSum / r.count;
      };
      const r = await model.forward(inp);
      assert.equal(r.count, B * T - 1);
      model.grads.fill(0);
      await model.backward(1 / r.count);
      const analytic = Float64Array.from(model.grads);
      // Central differences, awaited one by one (forward is async).
      const p = model.params as Float64Array;
      const numeric = new Float64Array(p.length);
      const h = 1e-5;
      for (let i = 0; i < p.length; i++) {
        const x0 = p[i]!;
        p[i] = x0 + h;
        const fp = await lossOf();
        p[i] = x0 - h;
        const fm = await lossOf();
        p[i] = x0;
        numeric[i] = (fp - fm) / (2 * h);
      }
      assert.equal(analytic.length, paramCount(cfg));
      expectAllClose(analytic, numeric, { rtol: 1e-6, atol: 1e-9 }, `dParams (${name})`);
    });
  }

  it('the arena holds exactly the bytes the size functions predict', () => {
    for (const ckpt of [false, true]) {
      const cfg = tiny({});
      const arena = new Arena('float64');
      new GPT({ config: cfg, kernels: jsKernels, arena, dtype: 'float64', rows: { B: 3, T: 7 }, checkpoint: ckpt });
      const s = arena.stats().byCategory;
      assert.equal(s.params.liveBytes, paramCount(cfg) * 8);
      assert.equal(s.grads.liveBytes, paramCount(cfg) * 8);
      assert.equal(s.activations.liveBytes + s.scratch.liveBytes, activationElements(cfg, { B: 3, T: 7 }, ckpt) * 8);
    }
  });

  it('rejects bad configs with one line naming the values', () => {
    const arena = new Arena('float64');
    assert.throws(() => new GPT({ config: tiny({ heads: 3 }), kernels: jsKernels, arena, dtype: 'float64', rows: { B: 1, T: 2 } }), /heads=3 must divide width=8/);
    assert.throws(() => new GPT({ config: tiny({ heads: 2, kvHeads: 3 }), kernels: jsKernels, arena, dtype: 'float64', rows: { B: 1, T: 2 } }), /kv-heads=3 must divide heads=2/);
  });
});
