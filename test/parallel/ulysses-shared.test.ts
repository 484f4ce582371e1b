/**
 * Ulysses' shared path (ulysses-shared.ts): every rank runs the kernels on the members' own
 * tensors for its kv groups. It equals single-device attention (out, lse, dq, dk, dv) like the
 * exchange does, on both transports (threads: bitwise the inproc result), with windows and
 * padding, with kv heads that split over the ranks (G ≥ P) and that the exchange would replicate
 * (G < P: chunks of a group's query heads, their dk, dv terms summed by the owner); its logs hold
 * no all-to-all.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distributedAttention } from '../../src/parallel/distributed.js';
import { ThreadsPool } from '../../src/comm/index.js';
import { loadNativeKernels } from '../../src/kernels/native/index.js';
import { cost } from '../../src/parallel/index.js';
import { expectAllClose } from '../helpers.js';
import { caseName, FIELDS, kernelReference, makeInputs, tolFor, type Case } from './harness.js';

const ops = (got: Awaited<ReturnType<typeof distributedAttention>>) => new Set(got.ranks.flatMap((r) => Object.values(r.records).flat().map((x) => x.op)));

async function check(c: Case, P: number, extra: Partial<Parameters<typeof distributedAttention>[0]> = {}) {
  const x = makeInputs(c, 11 * c.S + c.G + P);
  const ref = kernelReference(c, x);
  const got = await distributedAttention({ scheme: 'ulysses', P, ...x, ...c, shared: true, ...extra });
  for (const f of FIELDS) expectAllClose(got[f]!, ref[f], tolFor(c.dtype), `ulysses shared P=${P} ${caseName(c)}: ${f}`);
  return got;
}

describe('Ulysses on shared tensors equals single-device attention', () => {
  const pool = new ThreadsPool(4);
  after(() => pool.close());
  for (const P of [2, 4]) {
    it(`inproc P=${P}: f64 and f32, causal/full, G ∈ {1, 2, P, H}, B ∈ {1, 2}: no all-to-all`, async () => {
      for (const dtype of ['float64', 'float32'] as const) {
        for (const causal of [true, false]) {
          for (const G of [...new Set([1, 2, P, 8])]) {
            for (const B of [1, 2]) {
              const got = await check({ B, S: 8 * P, H: 8, G, D: 4, causal, dtype }, P);
              assert.ok(!ops(got).has('allToAll'), `P=${P} G=${G}: the shared path exchanged heads`);
              // the plan: 4 barriers, no bytes (inproc maps the buffers with barriers too)
              const planned = cost('ulysses', { B, S: 8 * P, T: 8, H: 8, G, D: 4, causal, scale: 0.5 }, P, { shared: true });
              assert.equal(got.commBytes['sp'] ?? 0, planned.commBytes['sp']! * P);
            }
          }
        }
      }
    });
  }

  it('a sliding window, and an S the layout pads (S = 21, P = 2)', async () => {
    await check({ B: 1, S: 32, H: 4, G: 2, D: 4, causal: true, dtype: 'float64', window: 5 }, 2);
    await check({ B: 2, S: 21, H: 4, G: 4, D: 4, causal: true, dtype: 'float64' }, 2, { pad: true });
  });

  it('kv heads the exchange would replicate (G < P) take the shared path; G ∤ P and P ∤ G is still an error', async () => {
    for (const [G, P] of [[1, 2], [1, 4], [2, 4]] as const) {
      const got = await check({ B: 1, S: 4 * P, H: 4, G, D: 4, causal: true, dtype: 'float64' }, P);
      assert.ok(!ops(got).has('allToAll'), `G=${G} P=${P}: exchanged heads`);
    }
    await assert.rejects(check({ B: 1, S: 12, H: 6, G: 2, D: 4, causal: true, dtype: 'float64' }, 3), /G=2/);
  });

  it('threads P=4 (js kernels, one worker per rank): bitwise the inproc result, f32 and f64, G = 4 and G = 2 < P', async () => {
    for (const [dtype, G] of [['float32', 4], ['float64', 4], ['float32', 2], ['float64', 2]] as const) {
      const c: Case = { B: 2, S: 24, H: 8, G, D: 4, causal: true, dtype };
      const x = makeInputs(c, 5);
      const a = await distributedAttention({ scheme: 'ulysses', P: 4, ...x, ...c, shared: true });
      const b = await distributedAttention({ scheme: 'ulysses', P: 4, ...x, ...c, shared: true, transport: 'threads', pool, timeoutMs: 20_000 });
      for (const f of FIELDS) assert.deepEqual(b[f], a[f], `${dtype} ${f}: threads differs from inproc`);
      assert.ok(!ops(b).has('allToAll'));
    }
  });

  it("native kernels (f32, inproc): the exchange's result, and single-device attention", { skip: 'kernels' in loadNativeKernels() ? false : 'native addon not built' }, async () => {
    const n = loadNativeKernels();
    if (!('kernels' in n)) return;
    for (const [causal, G] of [[true, 4], [false, 4], [true, 1]] as const) {
      const c: Case = { B: 1, S: 64, H: 8, G, D: 16, causal, dtype: 'float32' };
      const x = makeInputs(c, 3);
      const ref = kernelReference(c, x);
      const run = { scheme: 'ulysses' as const, P: 2, ...x, ...c, kernels: n.kernels };
      const [a, b] = [await distributedAttention({ ...run, shared: true }), await distributedAttention(run)];
      for (const f of FIELDS) {
        expectAllClose(a[f]!, b[f]!, tolFor('float32'), `native shared vs exchange, ${caseName(c)}: ${f}`);
        // against the float64-accumulating js kernels: the native f32 backward's dS = P(dP − delta)
        // cancels over 64 keys, so near-zero gradients get a slightly larger floor
        expectAllClose(a[f]!, ref[f], { rtol: 1e-5, atol: 5e-6 }, `native shared vs single device, ${caseName(c)}: ${f}`);
      }
    }
  });
});
