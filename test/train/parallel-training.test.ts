/**
 * Whole training runs under every sequence-parallel scheme and data parallelism equal
 * single-device training: losses and final weights (float64 tight; float32 loss curves).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { launchTraining } from '../../src/train/launch.js';
import type { TrainOptions } from '../../src/train/options.js';
import { tinyOptions, tinyCorpus, tinyCorpusFile, expectSameTraining } from './util.js';
import { expectAllClose } from '../helpers.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { createAttention } from '../../src/parallel/index.js';
import { ulyssesSavedSizes } from '../../src/parallel/ulysses.js';
import { runRanks } from '../../src/comm/run.js';
import { GPT } from '../../src/model/gpt.js';
import { Arena } from '../../src/tensor/arena.js';
import { modelConfigOf } from '../../src/train/options.js';
import { shardBatch, windows } from '../../src/train/data.js';

const corpusFile = tinyCorpusFile('seqpar-ptrain-');

/** Tiny GQA config (H=4, G=2) with S divisible by every 2P used below. */
const base = (over: Partial<TrainOptions>): TrainOptions =>
  tinyOptions({ data: corpusFile.path, seqLen: 16, heads: 4, kvHeads: 2, width: 16, steps: 4, evalEvery: 2, backend: 'js', transport: 'inproc', ...over });

const SCHEMES: [TrainOptions['spScheme'], number, number][] = [
  // scheme, sp, ulysses
  ['ulysses', 2, 1],
  ['ring', 2, 1],
  ['zigzag', 2, 1],
  ['stripe', 2, 1],
  ['rsa', 2, 1],
  ['allgather', 2, 1],
  ['hybrid', 4, 2],
  // More than 2 ring ranks: the blocks a rank receives must never land in its own k|v (ring.ts
  // kvRing sends the model's adjacent k, v halves in place and rotates arrivals through scratch).
  ['zigzag', 4, 1],
  ['stripe', 4, 1],
];

async function single(o: TrainOptions) {
  const [r] = await launchTraining({ ...o, ranks: 1, sp: 1, dp: 1, spScheme: 'local' }, { returnParams: true });
  return r!;
}

describe('parallel training equals single-device training', () => {
  for (const [scheme, sp, u] of SCHEMES) {
    it(`${scheme} sp=${sp}${u > 1 ? ` (ulysses ${u} × ring ${sp / u})` : ''}: same losses and weights after 4 steps (float64)`, async () => {
      const o = base({ dtype: 'float64' });
      const ref = await single(o);
      const res = await launchTraining({ ...o, ranks: sp, sp, spScheme: scheme, ulysses: u }, { returnParams: true });
      expectSameTraining(res, ref, scheme);
    });
  }

  for (const [transport, kvHeads] of [['inproc', 2], ['threads', 2], ['inproc', 1], ['threads', 1]] as const) {
    it(`ulysses sp=2, G=${kvHeads}, on ${transport}: the shared path (default) and the exchange (--no-shared-attention) train alike; the shared one keeps no saved slot`, async () => {
      const o = base({ dtype: 'float64', transport, ranks: 2, sp: 2, spScheme: 'ulysses', kvHeads });
      const ref = await single(o);
      const shared = await launchTraining(o, { returnParams: true });
      const exchange = await launchTraining({ ...o, sharedAttention: false }, { returnParams: true });
      expectSameTraining(shared, ref, `ulysses shared on ${transport}`);
      expectSameTraining(exchange, ref, `ulysses exchange on ${transport}`);
      // exactly the exchange's saved slot (head-side q, k, v, out, lse) of every layer less
      const cfg = modelConfigOf(o);
      const slot = ulyssesSavedSizes('ulysses', { B: o.batch, T: o.seqLen / 2, H: cfg.heads, G: cfg.kvHeads, D: cfg.width / cfg.heads }, 2).reduce((a, b) => a + b, 0);
      assert.equal(exchange[0]!.peakBytes - shared[0]!.peakBytes, cfg.layers * slot * 8);
    });
  }

  it('dp=2 equals one rank with twice the batch (float64)', async () => {
    const o = base({ dtype: 'float64' });
    const ref = await single({ ...o, batch: 2 * o.batch });
    const res = await launchTraining({ ...o, ranks: 2, dp: 2 }, { returnParams: true });
    expectSameTraining(res, ref!, 'dp', false);
  });

  it('dp=2 × zigzag sp=2 with gradient accumulation equals one rank with twice the batch (float64)', async () => {
    const o = base({ dtype: 'float64', gradAccum: 2 });
    const ref = await single({ ...o, batch: 2 * o.batch });
    const res = await launchTraining({ ...o, ranks: 4, dp: 2, sp: 2, spScheme: 'zigzag' }, { returnParams: true });
    expectSameTraining(res, ref!, 'dp×sp', false);
  });

  for (const [scheme, sp, u] of SCHEMES) {
    it(`${scheme}: 30-step float32 loss curve equals single device (rel 1e-5)`, async () => {
      const o = base({ dtype: 'float32', steps: 30, evalEvery: 0, backend: 'auto' });
      const ref = await single(o);
      const [r] = await launchTraining({ ...o, ranks: sp, sp, spScheme: scheme, ulysses: u });
      expectAllClose(r!.losses, ref.losses, { rtol: 1e-5 }, `${scheme} float32 loss curve`);
      assert.ok(ref.losses[29]! < ref.losses[0]! - 0.5, 'the curve should actually fall');
    });
  }

  it('on the threads transport too: zigzag sp=2 × dp=2 (float64)', async () => {
    const o = base({ dtype: 'float64', steps: 3 });
    const ref = await single({ ...o, batch: 2 * o.batch });
    const res = await launchTraining({ ...o, ranks: 4, dp: 2, sp: 2, spScheme: 'zigzag', transport: 'threads' }, { returnParams: true });
    expectAllClose(res[3]!.params!, ref.params!, { rtol: 1e-10, atol: 1e-12 }, 'threads dp×sp weights');
  });

  it('RoPE must use global positions: zigzag shards with local offsets fail to match single device', async () => {
    const S = 16;
    const cfg = modelConfigOf(tinyOptions({ heads: 4, kvHeads: 2 }));
    const c = tinyCorpus();
    const batch = windows(c.train, [0, 100], S);
    const lossWith = async (P: number, posOf: (layoutPos: Int32Array) => Int32Array): Promise<number> => {
      const sums = await runRanks(P, async (world) => {
        const attn = createAttention(P === 1 ? 'local' : 'zigzag', { sp: world.group }, jsKernels, { S });
        const truePos = attn.layout.positions(world.rank);
        const model = new GPT({ config: cfg, kernels: jsKernels, arena: new Arena('float64'), dtype: 'float64', rows: { B: 2, T: truePos.length } });
        model.store.init(model.params, 11);
        // Larger weights than a fresh init, so attention is sharp and positions matter visibly.
        jsKernels.scale(model.params, 8);
        const sh = shardBatch(batch, 0, 2, truePos);
        const r = await model.forward({ ...sh, pos: posOf(truePos), S, attn });
        return [r.lossSum, r.count];
      });
      const tot = sums.reduce((a, b) => [a[0]! + b[0]!, a[1]! + b[1]!]);
      return tot[0]! / tot[1]!;
    };
    const single = await lossWith(1, (p) => p);
    const right = await lossWith(2, (p) => p);
    const local = await lossWith(2, (p) => Int32Array.from(p, (_, i) => i));
    assert.ok(Math.abs(right - single) <= 1e-12 * Math.abs(single), `global positions: ${right} vs ${single}`);
    assert.ok(Math.abs(local - single) > 1e-6, `local RoPE offsets went unnoticed: ${local} vs ${single}`);
  });
});
