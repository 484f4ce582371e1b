/**
 * The sharded optimizer (ZeRO-1, train/zero.ts) trains exactly like the replicated one: losses,
 * weights, validation, gradient norms (with clipping active), on both transports, with a
 * parameter count that W does not divide; its checkpoints resume either way; and each rank holds
 * 1/W of the optimizer state.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchTraining } from '../../src/train/launch.js';
import { modelConfigOf, type TrainOptions } from '../../src/train/options.js';
import { ParamStore } from '../../src/model/params.js';
import { flatLength } from '../../src/train/zero.js';
import { tinyOptions, tinyCorpusFile, expectSameTraining } from './util.js';
import { expectAllClose } from '../helpers.js';

const corpusFile = tinyCorpusFile('seqpar-zero-');

// clip 0.05: every step's gradient norm is above it, so the clipped path (global norm over the
// shards) decides every update.
const base = (over: Partial<TrainOptions>): TrainOptions =>
  tinyOptions({ data: corpusFile.path, seqLen: 24, heads: 4, kvHeads: 2, width: 16, steps: 4, evalEvery: 2, backend: 'js', transport: 'inproc', dtype: 'float64', clip: 0.05, ...over });

const gradNorms = (dir: string): number[] =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).gradNorm as number);

describe('sharded optimizer (ZeRO-1)', () => {
  const cases: [string, Partial<TrainOptions>][] = [
    ['dp=2', { dp: 2, ranks: 2 }],
    ['zigzag sp=3', { sp: 3, ranks: 3, spScheme: 'zigzag' }],
    ['dp=2 × ring sp=2', { dp: 2, sp: 2, ranks: 4, spScheme: 'ring' }],
  ];

  it('a rank count that does not divide the parameter count is among the cases (flat padding)', () => {
    const n = new ParamStore(modelConfigOf(base({}))).size;
    assert.ok([2, 3, 4].some((w) => n % w !== 0), `the tiny model's ${n} parameters split evenly over 2, 3 and 4 ranks: pick another width`);
  });

  for (const [what, over] of cases) {
    it(`${what}: same losses, weights, validation and gradient norms as the replicated optimizer (float64)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'seqpar-zero-run-'));
      try {
        const o = base(over);
        const ref = await launchTraining({ ...o, shardOptimizer: false, out: join(dir, 'rep') }, { returnParams: true });
        const res = await launchTraining({ ...o, shardOptimizer: true, out: join(dir, 'zero') }, { returnParams: true });
        expectSameTraining(res, ref[0]!, what);
        const gn = gradNorms(join(dir, 'zero'));
        expectAllClose(gn, gradNorms(join(dir, 'rep')), { rtol: 1e-10 }, `${what} gradient norms`);
        assert.ok(gn.every((g) => g > o.clip), `clipping never triggered: ${gn}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('threads transport: dp=2 × zigzag sp=2 sharded equals replicated on inproc (float64)', async () => {
    const o = base({ dp: 2, sp: 2, ranks: 4, spScheme: 'zigzag', steps: 3 });
    const ref = await launchTraining({ ...o, shardOptimizer: false }, { returnParams: true });
    const res = await launchTraining({ ...o, shardOptimizer: true, transport: 'threads' }, { returnParams: true });
    expectSameTraining(res, ref[0]!, 'threads zero');
  });

  it('float32: a 20-step loss curve equals the replicated one (rel 1e-5)', async () => {
    const o = base({ dtype: 'float32', dp: 2, sp: 2, ranks: 4, spScheme: 'zigzag', steps: 20, evalEvery: 0, clip: 1 });
    const [ref] = await launchTraining({ ...o, shardOptimizer: false });
    const [res] = await launchTraining({ ...o, shardOptimizer: true });
    expectAllClose(res!.losses, ref!.losses, { rtol: 1e-5 }, 'float32 sharded loss curve');
  });

  for (const [from, to] of [[true, false], [false, true]] as const) {
    it(`a ${from ? 'sharded' : 'replicated'} run's checkpoint resumes ${to ? 'sharded' : 'replicated'}: same as uninterrupted (float64)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'seqpar-zero-ck-'));
      try {
        const o = base({ dp: 2, ranks: 2, steps: 6, checkpointEvery: 3 });
        const full = await launchTraining({ ...o, shardOptimizer: to, out: join(dir, 'full') }, { returnParams: true });
        await launchTraining({ ...o, steps: 3, shardOptimizer: from, out: join(dir, 'a') });
        const resumed = await launchTraining({ ...o, shardOptimizer: to, out: join(dir, 'b'), resume: join(dir, 'a', 'ckpt-000003') }, { returnParams: true });
        for (const r of resumed) {
          expectAllClose(r.losses, full[0]!.losses.slice(3), { rtol: 1e-10 }, `resumed losses (rank ${r.rank})`);
          expectAllClose(r.params!, full[0]!.params!, { rtol: 1e-10, atol: 1e-12 }, `resumed weights (rank ${r.rank})`);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('a checkpoint of 2 sharded ranks resumes on 3 (zigzag sp=3) sharded exactly as replicated (float64)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqpar-zero-w-'));
    try {
      const o = base({ dp: 2, ranks: 2, steps: 3 });
      await launchTraining({ ...o, shardOptimizer: true, out: join(dir, 'a') });
      const on3 = { ...o, dp: 1, sp: 3, ranks: 3, spScheme: 'zigzag' as const, steps: 6, resume: join(dir, 'a', 'ckpt-000003') };
      const rep = await launchTraining({ ...on3, shardOptimizer: false, out: join(dir, 'r') }, { returnParams: true });
      const zero = await launchTraining({ ...on3, shardOptimizer: true, out: join(dir, 'z') }, { returnParams: true });
      expectSameTraining(zero, rep[0]!, 'resumed on 3 ranks');
      assert.equal(zero[0]!.losses.length, 3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('each rank holds 1/W of AdamW m and v (peak bytes, exactly)', async () => {
    const W = 3;
    const o = base({ sp: W, ranks: W, spScheme: 'zigzag', steps: 1, evalEvery: 0 });
    const n = new ParamStore(modelConfigOf(o)).size;
    const c = flatLength(n, W) / W;
    const [rep] = await launchTraining({ ...o, shardOptimizer: false });
    const [zero] = await launchTraining({ ...o, shardOptimizer: true });
    // replicated: params, grads, m, v of n each; sharded: params and grads of W·c (the gradient
    // chunk is reduced in place), m and v of c each (8 bytes an element)
    assert.equal(rep!.peakBytes - zero!.peakBytes, 8 * (4 * n - (2 * W * c + 2 * c)));
  });
});
