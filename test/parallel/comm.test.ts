/**
 * Communication of the schemes (algorithms.md §12.5): logged calls equal each scheme's plan and
 * cost formula exactly (C1), delayed ranks do not deadlock (C2), overlap does not change results
 * (C3), ring dK/dV come home after P−1 hops (C5, TransformerEngine's schedule); plus validation messages and layering.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distributedAttention } from '../../src/parallel/distributed.js';
import { commPlan, cost, createAttention, ringLayout, ringSteps, validateScheme } from '../../src/parallel/index.js';
import type { AttnDims, SchemeName } from '../../src/parallel/types.js';
import { runRanks } from '../../src/comm/run.js';
import { DeviceMesh } from '../../src/comm/mesh.js';
import { sentBytes } from '../../src/comm/log.js';
import type { CommBuf, ProcessGroup, ReduceOp, RowMap } from '../../src/comm/types.js';
import { jsKernels } from '../../src/kernels/js/index.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { kernelReference, makeInputs, type Case, type Run } from './harness.js';
import { expectAllClose } from '../helpers.js';

const RUNS: Run[] = [
  { scheme: 'local', P: 1 },
  ...[1, 2, 3, 4].flatMap((P): Run[] => [
    { scheme: 'ring', P },
    { scheme: 'zigzag', P },
    { scheme: 'stripe', P },
    { scheme: 'allgather', P },
    { scheme: 'rsa', P },
  ]),
  { scheme: 'ulysses', P: 1 },
  { scheme: 'ulysses', P: 2 },
  { scheme: 'ulysses', P: 4 },
  { scheme: 'hybrid', P: 4, ulysses: 2 },
  { scheme: 'hybrid', P: 6, ulysses: 2 },
  { scheme: 'hybrid', P: 8, ulysses: 4 },
];

describe('communication', () => {
  it('C1: every rank logs exactly the planned calls; per-axis bytes equal cost() exactly (f32, f64, MHA/GQA/MQA)', async () => {
    for (const run of RUNS) {
      for (const [dtype, G] of [['float32', 4], ['float64', 2], ['float32', 1]] as const) {
        const c: Case = { B: 2, S: 12 * run.P, H: 4, G, D: 4, causal: true, dtype };
        const x = makeInputs(c, 11);
        const res = await distributedAttention({ ...run, ...x, B: c.B, S: c.S, H: c.H, G, D: c.D });
        const d: AttnDims = { B: c.B, S: c.S, T: c.S / run.P, H: c.H, G, D: c.D, causal: true, scale: 0.5 };
        const opts = { bytesPerElement: dtype === 'float64' ? 8 : 4, ulysses: run.ulysses };
        const plan = commPlan(run.scheme, d, run.P, opts);
        const want = cost(run.scheme, d, run.P, opts).commBytes;
        const what = `${run.scheme} P=${run.P} ${dtype} G=${G}`;
        res.ranks.forEach((rk, r) => {
          const got = Object.values(rk.records).flat().sort((a, b) => a.seq - b.seq || a.axis.localeCompare(b.axis));
          // Per axis, in call order: the same op and the same bytes as planned.
          for (const axis of new Set(plan.map((p) => p.axis))) {
            const g = rk.records[axis] ?? [];
            const p = plan.filter((x) => x.axis === axis);
            assert.deepEqual(
              g.map((x) => [x.op, x.bytes]),
              p.map((x) => [x.op, sentBytes(x.op, x.bufBytes, x.P, 0, x.op === 'sendRecv' && x.P > 1 ? 1 : 0)]),
              `${what} rank ${r} axis ${axis}`,
            );
          }
          assert.equal(got.length, plan.length, `${what} rank ${r}: ${got.length} calls logged, ${plan.length} planned`);
          for (const [axis, b] of Object.entries(want)) assert.equal(rk.commBytes[axis] ?? 0, b, `${what} rank ${r} axis ${axis}`);
        });
      }
    }
  });

  it('sliding windows: the ring runs only the steps a window leaves, and logs exactly the planned calls', async () => {
    // contiguous blocks of T = 8: a window within one block needs only the previous rank's block
    const lay = ringLayout('ring', 32, 4);
    assert.deepEqual([0, 3, 8, 9, 16, 17].map((w) => ringSteps(lay, true, w)), [1, 2, 2, 3, 3, 4]);
    assert.equal(ringSteps(lay, true), 4);
    assert.equal(ringSteps(lay, false, 3), 4);  // without causality the later blocks stay visible
    assert.equal(ringSteps(ringLayout('stripe', 32, 4), true, 3), 4);  // every rank holds a neighbour
    for (const run of [{ scheme: 'ring', P: 4 }, { scheme: 'ring', P: 3 }, { scheme: 'zigzag', P: 4 }, { scheme: 'stripe', P: 2 }, { scheme: 'hybrid', P: 4, ulysses: 2 }] as Run[]) {
      for (const window of [0, 3, 13]) {
        const c: Case = { B: 1, S: 8 * run.P, H: 4, G: 2, D: 4, causal: true, window, dtype: 'float64' };
        const x = makeInputs(c, 5);
        const res = await distributedAttention({ ...run, ...x, B: 1, S: c.S, H: 4, G: 2, D: 4, window });
        const ref = kernelReference(c, x);
        const d: AttnDims = { B: 1, S: c.S, T: c.S / run.P, H: 4, G: 2, D: 4, causal: true, window, scale: 0.5 };
        const plan = commPlan(run.scheme, d, run.P, { bytesPerElement: 8, ulysses: run.ulysses });
        const what = `${run.scheme} P=${run.P} window=${window}`;
        for (const f of ['out', 'lse', 'dq', 'dk', 'dv'] as const) expectAllClose(res[f]!, ref[f], { rtol: 1e-10, atol: 1e-12 }, `${what}: ${f}`);
        res.ranks.forEach((rk, r) => {
          const got = Object.values(rk.records).flat();
          assert.equal(got.length, plan.length, `${what} rank ${r}: ${got.length} calls logged, ${plan.length} planned`);
          for (const [axis, b] of Object.entries(cost(run.scheme, d, run.P, { bytesPerElement: 8, ulysses: run.ulysses }).commBytes)) assert.equal(rk.commBytes[axis] ?? 0, b, `${what} rank ${r} axis ${axis}`);
        });
        if (run.scheme === 'ring' && window <= 8) {
          const sends = plan.filter((q) => q.op === 'sendRecv').length;
          assert.equal(sends, window === 0 ? 0 : 3, `${what}: ${sends} transfers (forward k|v once, backward k|v and dK|dV once)`);
        }
      }
    }
  });

  it('cost formulas match the closed forms of algorithms.md §2.1, §2.5, §3.3 (per rank, fwd + bwd)', () => {
    const B = 2, S = 64, H = 8, D = 16, beta = 4;
    for (const P of [2, 4, 8]) {
      for (const G of [1, 2, 8]) {
        const d: AttnDims = { B, S, T: S / P, H, G, D, causal: true, scale: 0.25 };
        const n = (B * S * G * D) / P; // elements of one k block
        // Ring: K,V sent P−1 times in fwd and bwd, dK,dV P−1 times: 2n·3(P−1) elements.
        assert.equal(cost('zigzag', d, P).commBytes.sp, 2 * n * 3 * (P - 1) * beta);
        // All-gather: 2 gathers of k|v plus one reduce-scatter of dk|dv: 6n·(P−1).
        assert.equal(cost('allgather', d, P).commBytes.sp, 6 * n * (P - 1) * beta);
        if (H % P === 0 && (G % P === 0 || P % G === 0)) {
          const Gs = G % P === 0 ? G : P; // kv heads sent (replicated when P % G == 0)
          const T = S / P;
          // Ulysses, stateless: fwd q,k,v in and out,lse back; bwd q,k,v,out,dOut,lse in and dq,dk,dv back.
          const el = B * T * ((H + 2 * Gs) * D + H * (D + 1) + (3 * H + 2 * Gs) * D + H + (H + 2 * Gs) * D);
          assert.equal(cost('ulysses', d, P, { savedSlot: false }).commBytes.sp, (el * (P - 1)) / P * beta);
          // A saved slot (the default): bwd sends only dOut in.
          const kept = B * T * ((H + 2 * Gs) * D + H * (D + 1) + H * D + (H + 2 * Gs) * D);
          assert.equal(cost('ulysses', d, P).commBytes.sp, (kept * (P - 1)) / P * beta);
          // and holds them: [B, S, H/P | Gs/P, D|1] q, k, v, out, lse
          assert.equal(cost('ulysses', d, P).savedBytes, B * S * (2 * (H / P) * D + 2 * (Gs / P) * D + H / P) * beta);
          // The shared path (kv heads split or replicated alike): barriers, nothing held.
          const sh = cost('ulysses', d, P, { shared: true });
          assert.deepEqual([sh.commBytes.sp, sh.savedBytes], [0, 0]);
        }
      }
    }
  });

  // C5 (algorithms.md §12.5) asks for P hops, the ring_flash_attn schedule. We follow
  // TransformerEngine's instead (§2: step 0 k|v only, last step dK|dV only): the accumulator starts
  // at the first rank that is not its owner, so it is home after P − 1 hops and one 2·b·T·h_kv
  // transfer per layer is saved. That every contribution arrives is checked by the gradient tests.
  it('C5: ring backward sends k|v P−1 times and the dK|dV accumulator P−1 times (home after P−1 hops)', async () => {
    for (const P of [2, 3, 4]) {
      const c: Case = { B: 1, S: 4 * P, H: 2, G: 1, D: 4, causal: true, dtype: 'float64' };
      const res = await distributedAttention({ scheme: 'zigzag', P, ...makeInputs(c), ...c });
      for (const rk of res.ranks) {
        const sends = rk.records.sp!.filter((x) => x.op === 'sendRecv');
        assert.equal(sends.length, P - 1 + (P - 1) + (P - 1), `P=${P}: fwd P−1, bwd P−1 k|v + P−1 dK|dV`);
      }
    }
  });

  it('cost flops: zigzag busiest rank does ≈ half of the plain ring busiest rank at large P (causal)', () => {
    const d: AttnDims = { B: 1, S: 256, T: 32, H: 4, G: 4, D: 8, causal: true, scale: 1 };
    const ring = cost('ring', d, 8).flops;
    const zig = cost('zigzag', d, 8).flops;
    const local = cost('local', { ...d, T: 256 }, 1).flops;
    assert.equal(zig * 8, local, 'zigzag is perfectly balanced');
    assert.ok(ring / zig > 1.8, `ring/zigzag busiest-rank ratio ${ring / zig}`);
  });
});

/**
 * A ProcessGroup that delays every call on this rank by a rank-dependent, varying amount. Calls
 * reach the real group in the order the scheme made them (a transport sees calls in program
 * order); only the moment they arrive moves.
 */
function delayed(g: ProcessGroup, seed: number): ProcessGroup {
  let n = seed;
  let issued: Promise<void> = Promise.resolve();
  const issue = <T>(f: () => Promise<T>): Promise<T> => {
    let done!: () => void;
    const next = new Promise<void>((res) => (done = res));
    const result = issued
      .then(() => new Promise<void>((res) => setTimeout(res, (n = (n * 7 + 3) % 5))))
      .then(() => {
        const p = f();
        done();
        return p;
      });
    issued = next;
    return result;
  };
  return {
    axis: g.axis,
    rank: g.rank,
    size: g.size,
    ranks: g.ranks,
    log: g.log,
    allReduce: (b: CommBuf, op?: ReduceOp) => issue(() => g.allReduce(b, op)),
    allGather: (o: CommBuf, i: CommBuf) => issue(() => g.allGather(o, i)),
    reduceScatter: (o: CommBuf, i: CommBuf, op?: ReduceOp) => issue(() => g.reduceScatter(o, i, op)),
    allToAll: (o: CommBuf, i: CommBuf) => issue(() => g.allToAll(o, i)),
    allToAllRows: (o: CommBuf, i: CommBuf, map: RowMap, add?: boolean) => issue(() => g.allToAllRows(o, i, map, add)),
    broadcast: (b: CommBuf, root: number) => issue(() => g.broadcast(b, root)),
    sendRecv: (s: CommBuf, dst: number, r: CommBuf, src: number) => issue(() => g.sendRecv(s, dst, r, src)),
    barrier: () => issue(() => g.barrier()),
    allocBuffer: (dtype, n) => g.allocBuffer(dtype, n),
    releaseBuffer: (b: CommBuf) => g.releaseBuffer(b),
  };
}

/** Runs a scheme on P inproc ranks with a custom group wrapper; returns per-rank out/lse/dq/dk/dv. */
async function runWith(run: Run, c: Case, wrap: (g: ProcessGroup, rank: number) => ProcessGroup, overlap = true, gradInit = 0) {
  const x = makeInputs(c, 21);
  return runRanks(run.P, async (world) => {
    const u = run.ulysses ?? 1;
    const mesh = DeviceMesh.create({ sp: run.P, ulysses: u, ring: run.P / u }, world);
    const groups = { sp: wrap(mesh.group('sp'), world.rank), ulysses: wrap(mesh.group('ulysses'), world.rank), ring: wrap(mesh.group('ring'), world.rank) };
    const op = createAttention(run.scheme, groups, jsKernels, { S: c.S, overlap });
    const { B, S, H, G, D } = c;
    const T = S / run.P;
    const pick = (b: typeof x.q, row: number) => {
      const o = allocBuf(c.dtype, B * T * row);
      for (let bb = 0; bb < B; bb++) op.positions.forEach((p, i) => o.set(b.subarray((bb * S + p) * row, (bb * S + p + 1) * row), (bb * T + i) * row));
      return o;
    };
    const q = pick(x.q, H * D), k = pick(x.k, G * D), v = pick(x.v, G * D), dOut = pick(x.dOut, H * D);
    const d: AttnDims = { B, S, T, H, G, D, causal: c.causal, scale: 1 / Math.sqrt(D) };
    const out = allocBuf(c.dtype, q.length), lse = allocBuf(c.dtype, B * T * H);
    await op.forward({ out, lse }, { q, k, v }, d);
    const dq = allocBuf(c.dtype, q.length).fill(gradInit), dk = allocBuf(c.dtype, k.length).fill(gradInit), dv = allocBuf(c.dtype, v.length).fill(gradInit);
    await op.backward({ dq, dk, dv }, { dOut, q, k, v, out, lse }, d);
    return { out, lse, dq, dk, dv, positions: op.positions };
  }, { timeoutMs: 20_000 });
}

describe('scheduling', () => {
  const runs: Run[] = [
    { scheme: 'ring', P: 3 },
    { scheme: 'zigzag', P: 4 },
    { scheme: 'stripe', P: 3 },
    { scheme: 'ulysses', P: 4 },
    { scheme: 'allgather', P: 3 },
    { scheme: 'rsa', P: 3 },
    { scheme: 'hybrid', P: 6, ulysses: 2 },
  ];
  const c: Case = { B: 2, S: 24, H: 4, G: 2, D: 4, causal: true, dtype: 'float64' };

  it('C2: ranks delayed by different amounts at every call neither deadlock nor change results', async () => {
    for (const run of runs) {
      const plain = await runWith(run, c, (g) => g);
      const slow = await runWith(run, c, (g, rank) => delayed(g, rank + 1));
      assert.deepEqual(slow, plain, `${run.scheme} P=${run.P}`);
    }
  });

  it('C3: synchronous transfers (overlap off) give bitwise the same results as overlapped ones', async () => {
    for (const run of runs.filter((r) => ['ring', 'zigzag', 'stripe', 'hybrid'].includes(r.scheme))) {
      const a = await runWith(run, c, (g) => g, true);
      const b = await runWith(run, c, (g) => g, false);
      assert.deepEqual(a, b, `${run.scheme} P=${run.P}`);
    }
  });

  it('backward accumulates into dq, dk, dv (+=) and forward overwrites out, lse', async () => {
    for (const run of runs) {
      const a = await runWith(run, c, (g) => g);
      const b = await runWith(run, c, (g) => g, true, 1);
      a.forEach((ra, r) => {
        const rb = b[r]!;
        assert.deepEqual(rb.out, ra.out);
        for (const f of ['dq', 'dk', 'dv'] as const) {
          rb[f].forEach((x, i) => assert.ok(Math.abs(x - 1 - ra[f][i]!) < 1e-12, `${run.scheme} rank ${r} ${f}[${i}]`));
        }
      });
    }
  });

  it('direct AttentionOp use matches the reference slice per rank (positions from op.positions)', async () => {
    const ref = kernelReference(c, makeInputs(c, 21));
    const res = await runWith({ scheme: 'zigzag', P: 4 }, c, (g) => g);
    for (const rk of res) {
      rk.positions.forEach((p, i) => {
        for (let b = 0; b < c.B; b++) {
          for (let h = 0; h < c.H; h++) assert.ok(Math.abs(rk.lse[(b * 6 + i) * c.H + h]! - ref.lse[(b * c.S + p) * c.H + h]!) < 1e-12);
        }
      });
    }
  });
});

describe('validation', () => {
  it('one-line errors for invalid combinations', () => {
    const v = (s: SchemeName, c: { S: number; P: number; H: number; G: number; ulysses?: number }) => () => validateScheme(s, c);
    assert.throws(v('ulysses', { S: 16, P: 4, H: 6, G: 6 }), { message: 'ulysses: heads H=6 not divisible by sp=4' });
    assert.throws(v('ulysses', { S: 16, P: 4, H: 12, G: 3 }), { message: 'ulysses: kv heads G=3 and sp=4: need G % sp == 0 or sp % G == 0' });
    assert.throws(v('ulysses', { S: 18, P: 4, H: 4, G: 4 }), { message: 'ulysses: S=18 not divisible by sp=4' });
    assert.throws(v('zigzag', { S: 30, P: 4, H: 4, G: 4 }), { message: 'zigzag: S=30 not divisible by 2*sp=8' });
    assert.throws(v('ring', { S: 30, P: 4, H: 4, G: 4 }), { message: 'ring: S=30 not divisible by sp=4' });
    assert.throws(v('stripe', { S: 30, P: 4, H: 4, G: 4 }), { message: 'stripe: S=30 not divisible by sp=4' });
    assert.throws(v('ring', { S: 32, P: 4, H: 6, G: 4 }), { message: 'ring: heads H=6 not divisible by kv heads G=4' });
    assert.throws(v('hybrid', { S: 32, P: 8, H: 6, G: 6, ulysses: 4 }), { message: 'hybrid: heads H=6 not divisible by ulysses=4' });
    assert.throws(v('hybrid', { S: 32, P: 8, H: 12, G: 3, ulysses: 4 }), { message: 'hybrid: kv heads G=3 and ulysses=4: need G % ulysses == 0 or ulysses % G == 0' });
    assert.throws(v('local', { S: 32, P: 2, H: 4, G: 4 }), { message: 'local: sp=2, expected 1' });
    // Accepted on purpose: odd P for zigzag, and zigzag/stripe without a causal mask (exact, just pointless).
    validateScheme('zigzag', { S: 18, P: 3, H: 4, G: 4 });
    validateScheme('ulysses', { S: 16, P: 4, H: 8, G: 2 });
  });

  it('the op rejects dims that do not match what it was built for', async () => {
    await assert.rejects(
      runRanks(2, async (world) => {
        const op = createAttention('ring', { sp: world.newGroup([0, 1], 'sp') }, jsKernels, { S: 8 });
        const b = new Float64Array(64);
        await op.forward({ out: b, lse: new Float64Array(8) }, { q: b, k: b, v: b }, { B: 1, S: 8, T: 8, H: 2, G: 2, D: 4, causal: true, scale: 1 });
      }),
      /ring: dims S=8 T=8 but op built for S=8, sp=2 \(T=4\)/,
    );
  });

  it('layering: src/parallel imports kernels, comm, tensor — never model/', () => {
    const dir = join(dirname(fileURLToPath(import.meta.url)), '../../src/parallel');
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.js'))) {
      const src = readFileSync(join(dir, f), 'utf8');
      for (const m of src.matchAll(/from '([^']+)'/g)) {
        const spec = m[1]!;
        assert.ok(!spec.includes('/model/') && !spec.includes('/train/') && !spec.includes('/plan/'), `${f} imports ${spec}`);
      }
    }
  });
});
