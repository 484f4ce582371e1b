/**
 * The scratch pool: buffers persist across calls of an op and come back with the previous call's
 * contents. Every scheme must give, call after call, bitwise what a fresh op gives on the same
 * inputs — with its scratch poisoned (NaN) between calls, so a caller that relies on zeroed scratch
 * fails here — and the pool must stop growing once forward and backward have each run once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createAttention, type SpAttention } from '../../src/parallel/index.js';
import type { AttnDims, SchemeName } from '../../src/parallel/types.js';
import { Scratch } from '../../src/parallel/util.js';
import { runRanks } from '../../src/comm/run.js';
import { DeviceMesh } from '../../src/comm/mesh.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import type { Buf } from '../../src/tensor/dtype.js';
import { expectAllClose, randInts, randn } from '../helpers.js';
import { createLocalAttention } from '../../src/parallel/local.js';
import { GPT } from '../../src/model/gpt.js';
import { DEFAULT_CONFIG } from '../../src/model/config.js';
import { Arena } from '../../src/tensor/arena.js';

const RUNS: { scheme: SchemeName; P: number; ulysses?: number }[] = [
  { scheme: 'local', P: 1 },
  { scheme: 'ring', P: 2 },
  { scheme: 'zigzag', P: 3 },
  { scheme: 'stripe', P: 2 },
  { scheme: 'ulysses', P: 2 },
  { scheme: 'allgather', P: 2 },
  { scheme: 'rsa', P: 2 },
  { scheme: 'hybrid', P: 4, ulysses: 2 },
];

type Result = Record<'out' | 'lse' | 'dq' | 'dk' | 'dv', Buf>;

async function fwdBwd(op: SpAttention, d: AttnDims, seed: number): Promise<Result> {
  const { B, T, H, G, D } = d;
  const q = randn('float64', B * T * H * D, seed);
  const k = randn('float64', B * T * G * D, seed + 1);
  const v = randn('float64', B * T * G * D, seed + 2);
  const dOut = randn('float64', B * T * H * D, seed + 3);
  const out = new Float64Array(q.length);
  const lse = new Float64Array(B * T * H);
  await op.forward({ out, lse }, { q, k, v }, d);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  await op.backward({ dq, dk, dv }, { dOut, q, k, v, out, lse }, d);
  return { out, lse, dq, dk, dv };
}

describe('scratch pool reuse', () => {
  it('Scratch: slot i is reused and grows to the largest request; peakBytes = bytes held', () => {
    const s = new Scratch();
    const like = new Float32Array(1);
    s.begin();
    const a = s.alloc(like, 8);
    const b = s.alloc(like, 4);
    assert.equal(s.peakBytes, 48);
    s.begin();
    assert.equal(s.alloc(like, 8), a);
    const b2 = s.alloc(like, 16); // grows slot 1
    assert.notEqual(b2.buffer, b.buffer);
    assert.equal(s.peakBytes, 96);
    s.begin();
    const a3 = s.alloc(like, 4); // smaller request: a view of the held buffer
    assert.equal(a3.buffer, a.buffer);
    assert.equal(a3.length, 4);
    assert.equal(s.alloc(new Float64Array(1), 16) instanceof Float64Array, true); // dtype change replaces the slot
    assert.equal(s.peakBytes, 32 + 128);
  });

  for (const run of RUNS) {
    it(`${run.scheme} P=${run.P}: repeated calls with poisoned scratch equal a fresh op bitwise (B = 1, 2)`, async () => {
      for (const B of [1, 2]) {
        const S = 12 * run.P;
        await runRanks(run.P, async (world) => {
          const u = run.ulysses ?? 1;
          const mesh = DeviceMesh.create({ sp: run.P, ulysses: u, ring: run.P / u }, world);
          const groups = { sp: mesh.group('sp'), ulysses: mesh.group('ulysses'), ring: mesh.group('ring') };
          const make = () => createAttention(run.scheme, groups, jsKernels, { S });
          const op = make();
          const d: AttnDims = { B, S, T: op.positions.length, H: 4, G: 2, D: 4, causal: true, scale: 0.5 };
          let held = 0;
          for (let it = 0; it < 3; it++) {
            const seed = 100 * it + 10 * world.rank + B;
            const got = await fwdBwd(op, d, seed);
            const want = await fwdBwd(make(), d, seed);
            for (const f of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
              assert.deepEqual(got[f], want[f], `${run.scheme} B=${B} rank ${world.rank} call ${it}: ${f}`);
            }
            if (it === 1) held = op.scratch.peakBytes;
            if (it === 2) assert.equal(op.scratch.peakBytes, held, `${run.scheme}: the pool grew after the first calls`);
            op.scratch.poison();
          }
        });
      }
    });
  }
});

describe('the saved slot (what forward saves for backward, as a named buffer)', () => {
  for (const run of [{ scheme: 'ulysses' as const, P: 2 }, { scheme: 'ulysses' as const, P: 4 }, { scheme: 'hybrid' as const, P: 4, ulysses: 2 }]) {
    it(`${run.scheme} P=${run.P}: with a saved slot results equal the no-slot path bitwise and backward sends only dOut in`, async () => {
      const S = 8 * run.P;
      await runRanks(run.P, async (world) => {
        const u = run.ulysses ?? run.P;
        const mesh = DeviceMesh.create({ sp: run.P, ulysses: u, ring: run.P / u }, world);
        const groups = { sp: mesh.group('sp'), ulysses: mesh.group('ulysses'), ring: mesh.group('ring') };
        const axis = run.scheme === 'hybrid' ? 'ulysses' : 'sp';
        const op = createAttention(run.scheme, groups, jsKernels, { S });
        const d: AttnDims = { B: 2, S, T: op.positions.length, H: 4, G: 2, D: 4, causal: true, scale: 0.5 };
        const { B, T, H, G, D } = d;
        // q, k, v, out [B, u·T, H/u | G/u, D] and lse [B, u·T, H/u] (kv replicated when u % G == 0)
        const Gs = G % u === 0 ? G : u;
        assert.equal(op.savedElements!(d), B * u * T * (2 * (H / u) * D + 2 * (Gs / u) * D + H / u));
        const x = {
          q: randn('float64', B * T * H * D, 10 + world.rank), k: randn('float64', B * T * G * D, 20 + world.rank), v: randn('float64', B * T * G * D, 30 + world.rank),
          dOut: randn('float64', B * T * H * D, 40 + world.rank),
        };
        const run1 = async (saved: Buf | undefined) => {
          const out = new Float64Array(x.q.length), lse = new Float64Array(B * T * H);
          await op.forward({ out, lse, saved }, { q: x.q, k: x.k, v: x.v }, d);
          const g = { dq: new Float64Array(x.q.length), dk: new Float64Array(x.k.length), dv: new Float64Array(x.v.length) };
          const before = groups[axis].log.records.filter((r) => r.axis === axis).length;
          await op.backward(g, { dOut: x.dOut, q: x.q, k: x.k, v: x.v, out, lse, saved }, d);
          const a2a = groups[axis].log.records.filter((r) => r.axis === axis).slice(before).filter((r) => r.op === 'allToAll').length;
          return { out, lse, ...g, a2a };
        };
        const plain = await run1(undefined);
        const withSlot = await run1(new Float64Array(op.savedElements!(d)).fill(NaN));
        for (const f of ['out', 'lse', 'dq', 'dk', 'dv'] as const) assert.deepEqual(withSlot[f], plain[f], `${f}, rank ${world.rank}`);
        assert.equal(plain.a2a, 9, 'no slot: q, k, v, out, lse, dOut in; dq, dk, dv out');
        assert.equal(withSlot.a2a, 4, 'slot: dOut in; dq, dk, dv out');
        await assert.rejects(op.forward({ out: new Float64Array(x.q.length), lse: new Float64Array(B * T * H), saved: new Float64Array(3) }, x, d), /saved slot has 3 elements, needs/);
      });
    });
  }
});

describe('saved slots in the model', () => {
  for (const run of [{ scheme: 'ulysses' as const, P: 2 }, { scheme: 'hybrid' as const, P: 4, ulysses: 2 }]) {
    it(`${run.scheme} P=${run.P}: a 3-layer model with and without checkpointing gives bitwise the same gradients; slots are arena activations, one per kept layer`, async () => {
      const S = 4 * run.P;
      await runRanks(run.P, async (world) => {
        const u = run.ulysses ?? run.P;
        const mesh = DeviceMesh.create({ sp: run.P, ulysses: u, ring: run.P / u }, world);
        const groups = { sp: mesh.group('sp'), ulysses: mesh.group('ulysses'), ring: mesh.group('ring') };
        const cfg = { ...DEFAULT_CONFIG, vocab: 11, width: 16, layers: 3, heads: 4, kvHeads: 2, ffn: 12 };
        const grads: Float64Array[] = [];
        const slotBytes: number[] = [];
        for (const checkpoint of [false, true]) {
          const attn = createAttention(run.scheme, groups, jsKernels, { S });
          const pos = attn.positions;
          const arena = new Arena('float64');
          const model = new GPT({ config: cfg, kernels: jsKernels, arena, dtype: 'float64', rows: { B: 1, T: pos.length }, checkpoint });
          const before = arena.stats().byCategory.activations.liveBytes;
          model.store.init(model.params, 3);
          const glob = randInts(S + 1, cfg.vocab, 5);
          const tokens = Int32Array.from(pos, (p) => glob[p]!);
          const targets = Int32Array.from(pos, (p) => glob[p + 1]!);
          for (let step = 0; step < 2; step++) {
            model.grads.fill(0);
            await model.forward({ tokens, targets, pos, S, attn });
            await model.backward(1 / S);
          }
          grads.push(Float64Array.from(model.grads));
          slotBytes.push((arena.stats().byCategory.activations.liveBytes) - before);
          const dims = { B: 1, S, T: pos.length, H: 4, G: 2, D: 4, causal: true, scale: 0.5 };
          assert.equal(slotBytes.at(-1), (checkpoint ? 1 : 3) * attn.savedElements!(dims) * 8, `rank ${world.rank}: slot bytes, checkpoint=${checkpoint}`);
        }
        assert.deepEqual(grads[1], grads[0], `rank ${world.rank}: gradients with checkpointing`);
        // and, summed over the ranks, they are the single-device gradients (float64 1e-10)
        const summed = Float64Array.from(grads[1]!);
        await world.group.allReduce(summed, 'sum');
        const one = new GPT({ config: cfg, kernels: jsKernels, arena: new Arena('float64'), dtype: 'float64', rows: { B: 1, T: S } });
        one.store.init(one.params, 3);
        const glob = randInts(S + 1, cfg.vocab, 5);
        const all = Int32Array.from({ length: S }, (_, i) => i);
        for (let step = 0; step < 2; step++) {
          one.grads.fill(0);
          await one.forward({ tokens: glob.subarray(0, S), targets: glob.subarray(1, S + 1), pos: all, S, attn: createLocalAttention(jsKernels, S) });
          await one.backward(1 / S);
        }
        expectAllClose(summed, one.grads, { rtol: 1e-10, atol: 1e-13 }, `rank ${world.rank}: gradients vs single device`);
      });
    });
  }
});
