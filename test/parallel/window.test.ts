/**
 * Sliding-window attention under every scheme: out, lse, dq, dk, dv equal single-device attention
 * with the same window (a query at p attends keys ≥ p − window), causal and not, windows shorter
 * than a rank's block and longer, MHA and GQA, also on a padded length, float64 (1e-10).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distributedAttention } from '../../src/parallel/distributed.js';
import { expectAllClose, toF64 } from '../helpers.js';
import { close32, native, skipReason } from '../kernels/native-util.js';
import { caseName, kernelReference, makeInputs, tolFor, type Case, type Run, FIELDS, runLabel } from './harness.js';

const RUNS: Run[] = [
  { scheme: 'local', P: 1 },
  ...[2, 3, 4].flatMap((P): Run[] => (['ring', 'zigzag', 'stripe', 'ulysses', 'allgather', 'rsa'] as const).map((scheme) => ({ scheme, P }))),
  { scheme: 'hybrid', P: 4, ulysses: 2 },
];

const label = runLabel;

async function check(run: Run, c: Case, pad = false): Promise<void> {
  const x = makeInputs(c, 13 * c.S + (c.window ?? 0));
  const ref = kernelReference(c, x);
  const got = await distributedAttention({ ...run, ...x, B: c.B, S: c.S, H: c.H, G: c.G, D: c.D, causal: c.causal, window: c.window, pad });
  for (const f of FIELDS) expectAllClose(got[f]!, ref[f], tolFor(c.dtype), `${label(run)} ${caseName(c)}${pad ? ' padded' : ''}: ${f}`);
}

describe('sliding-window attention under every scheme equals single-device attention', () => {
  for (const run of RUNS) {
    it(`${label(run)}: f64, causal/full, window 0, 3 and 2·S/P, G ∈ {1, H}`, async () => {
      const H = run.P === 3 ? 6 : 4;
      const S = 8 * run.P;
      let ran = 0;
      for (const causal of [true, false]) {
        for (const window of [0, 3, (2 * S) / run.P]) {
          for (const G of [1, H]) {
            if (run.scheme === 'ulysses' && G % run.P !== 0 && run.P % G !== 0) continue;
            await check(run, { B: 2, S, H, G, D: 4, causal, window, dtype: 'float64' });
            ran++;
          }
        }
      }
      if (run.scheme !== 'local') await check(run, { B: 1, S: S + 1, H, G: H, D: 4, causal: true, window: 5, dtype: 'float64' }, true);
      assert.ok(ran >= 6, `${label(run)}: only ${ran} cases ran`);
    });
  }

  it('float32 on the native kernels: zigzag, ulysses, allgather, ring at P = 2, window 5 and 40, padded S', async (t) => {
    if (!native) return t.skip(`native backend unavailable: ${skipReason}`);
    for (const scheme of ['zigzag', 'ulysses', 'allgather', 'ring'] as const) {
      for (const window of [5, 40]) {
        const c: Case = { B: 1, S: 67, H: 4, G: 2, D: 32, causal: true, window, dtype: 'float32' };
        const x = makeInputs(c, window);
        const ref = kernelReference({ ...c, dtype: 'float64' }, { q: toF64(x.q), k: toF64(x.k), v: toF64(x.v), dOut: toF64(x.dOut) });
        const got = await distributedAttention({ scheme, P: 2, ...x, B: 1, S: c.S, H: 4, G: 2, D: 32, window, pad: true, kernels: native });
        for (const f of FIELDS) close32(got[f]!, ref[f], `${scheme} native ${caseName(c)} padded: ${f}`);
      }
    }
  });

  it('on the threads transport too: ring P=4 with a window within one block (the last hop skips ranks)', async () => {
    const c: Case = { B: 1, S: 32, H: 4, G: 2, D: 4, causal: true, window: 3, dtype: 'float64' };
    const x = makeInputs(c, 2);
    const ref = kernelReference(c, x);
    const got = await distributedAttention({ scheme: 'ring', P: 4, ...x, B: 1, S: 32, H: 4, G: 2, D: 4, window: 3, transport: 'threads' });
    for (const f of FIELDS) expectAllClose(got[f]!, ref[f], tolFor('float64'), `ring threads window=3: ${f}`);
    assert.equal(got.ranks[0]!.records['sp']!.length, 3);
  });

  it('the window changes the result (so the cases above test it), and a negative window is an error', async () => {
    const c: Case = { B: 1, S: 16, H: 2, G: 2, D: 4, causal: true, dtype: 'float64' };
    const x = makeInputs(c, 1);
    const full = await distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4 });
    const win = await distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4, window: 3 });
    assert.ok(full.out.some((v, i) => Math.abs(v - win.out[i]!) > 1e-3), 'window 3 gave the full causal result');
    await assert.rejects(distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4, window: -1 }), /window=-1 must be a non-negative integer/);
  });
});
