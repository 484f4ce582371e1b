/**
 * `seqpar bench sp`: a full training step (forward, backward, gradient all-reduce, AdamW) of the
 * reference model (byte GPT, C=256, L=4, H=8, F=1024, RoPE) on ONE sequence of N tokens, split
 * over P ranks (worker threads, one per core when there are enough) by each scheme, against one
 * rank on one core. Each case first checks that its loss equals the single-rank loss (float32,
 * rel 1e-4), then times warm steps. Reports step time, tokens/s, speedup, peak memory per rank
 * (arena: parameters, optimizer, activations; plus the scheme's transient scratch) and the bytes
 * each rank sent.
 */
import { cpus } from 'node:os';
import type { World } from '../../src/comm/types.js';
import { DeviceMesh } from '../../src/comm/mesh.js';
import { runRanks } from '../../src/comm/run.js';
import { selectKernels } from '../../src/kernels/index.js';
import { prepareRankThread } from '../../src/parallel/rank-thread.js';
import { createAttention, cost } from '../../src/parallel/index.js';
import type { SchemeName } from '../../src/parallel/types.js';
import { GPT } from '../../src/model/gpt.js';
import { Arena } from '../../src/tensor/arena.js';
import { Rng } from '../../src/tensor/rng.js';
import { createOptimizer, gradCommOf, SINGLE_RANK } from '../../src/train/zero.js';
import { REFERENCE_MODEL } from './train-step.js';
import { appendResult, median } from '../util.js';
import { nativeAddon } from '../../src/kernels/native/index.js';

export interface SpStepArgs {
  scheme: SchemeName;
  sp: number;
  ulysses: number;
  N: number;
  reps: number;
  /** Untimed steps before the timed ones (0: the first step is timed, for sizes where a step takes minutes). */
  warmup: number;
  backend: 'auto' | 'js' | 'native';
  /**
   * Every rank runs the whole one-rank step on its own (sp = 1, no collective but the timing
   * barrier): P independent copies at once, for the host's concurrent ceiling.
   */
  alone?: boolean;
  /** Sliding-window attention of the model (GPTConfig.window); absent: full causal. */
  window?: number;
  /** Every rank keeps the whole AdamW state and updates every parameter (--no-shard-optimizer). */
  replicated?: boolean;
  /** ulysses: exchange heads even though the threads transport shares memory (--no-shared-attention). */
  exchange?: boolean;
  /** kv heads of the model (GQA; absent: the reference model's, one per query head). */
  kvHeads?: number;
}

export interface SpStepResult {
  rank: number;
  firstLoss: number;
  stepSecs: number[];
  /**
   * CPU seconds of this rank's thread per timed step (native backend; NaN without it): the work a
   * step did, without the time other tenants took from it or the rank spent asleep in a wait.
   */
  stepCpuSecs: number[];
  peakBytes: number;
  scratchBytes: number;
  commBytes: Record<string, number>;
  backend: string;
}

/** Runs on every rank (exported by name for the threads transport). */
export async function spStepEntry(world: World, a: SpStepArgs): Promise<SpStepResult> {
  prepareRankThread(world);
  const mesh = a.alone
    ? DeviceMesh.create({ dp: world.size, sp: 1, tp: 1, ulysses: 1, ring: 1 }, world)
    : DeviceMesh.create({ dp: 1, sp: a.sp, tp: 1, ulysses: a.ulysses, ring: a.sp / a.ulysses }, world);
  const shared = world.size > 1 && !a.alone;  // ranks that hold one sequence between them
  const { kernels } = selectKernels(a.backend);
  const attn = createAttention(a.scheme, { sp: mesh.group('sp'), ulysses: mesh.group('ulysses'), ring: mesh.group('ring') }, kernels, { S: a.N, shared: !a.exchange });
  const pos = attn.layout.positions(mesh.group('sp').rank);
  const arena = new Arena('float32');
  const config = { ...REFERENCE_MODEL, ...(a.window !== undefined ? { window: a.window } : {}), ...(a.kvHeads !== undefined ? { kvHeads: a.kvHeads } : {}) };
  // The optimizer as `seqpar train` runs it: sharded over the ranks of one sequence (ZeRO-1,
  // train/zero.ts) unless a.replicated.
  const shard = shared && !a.replicated;
  const model = new GPT({ config, kernels, arena, dtype: 'float32', rows: { B: 1, T: pos.length }, flatMultiple: shard ? world.size : 1, ioAlloc: attn.ioAlloc });
  model.store.init(model.params, 5);
  const opt = createOptimizer(model.store, arena, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }, model.params, shared ? gradCommOf(world.group) : SINGLE_RANK, shard);
  // The same global sequence on every rank; each takes its layout's positions (targets shifted first).
  const rng = new Rng(9);
  const glob = Int32Array.from({ length: a.N + 1 }, () => rng.int(256));
  const tokens = Int32Array.from(pos, (p) => glob[p]!);
  const targets = Int32Array.from(pos, (p) => glob[p + 1]!);
  const step = async (): Promise<number> => {
    model.grads.fill(0);
    const r = await model.forward({ tokens, targets, pos, S: a.N, attn });
    await model.backward(1 / a.N);
    await opt.step(kernels, model.params, model.grads, 1e-4, 0);
    const loss = new Float64Array([r.lossSum]);
    if (shared) await world.group.allReduce(loss, 'sum');
    return loss[0]! / a.N;
  };
  let firstLoss = a.warmup > 0 ? await step() : NaN;
  for (let i = 1; i < a.warmup; i++) await step();
  const stepSecs: number[] = [];
  const stepCpuSecs: number[] = [];
  const cpu = () => nativeAddon()?.cpuSeconds() ?? NaN;
  for (let i = 0; i < a.reps; i++) {
    await world.group.barrier();
    const t0 = performance.now();
    const c0 = cpu();
    const loss = await step();
    stepCpuSecs.push(cpu() - c0);
    if (Number.isNaN(firstLoss)) firstLoss = loss;
    const t = new Float64Array([(performance.now() - t0) / 1000]);
    if (world.size > 1) await world.group.allReduce(t, 'max');
    stepSecs.push(t[0]!);
  }
  const commBytes: Record<string, number> = {};
  for (const ax of ['sp', 'ulysses', 'ring'] as const) {
    const g = mesh.group(ax);
    if (g.size > 1 && (ax === 'sp' ? a.scheme !== 'hybrid' : a.scheme === 'hybrid')) commBytes[ax] = g.log.totalBytes() / (a.reps + a.warmup);
  }
  return { rank: world.rank, firstLoss, stepSecs, stepCpuSecs, peakBytes: arena.stats().peakBytes, scratchBytes: attn.scratch.peakBytes, commBytes, backend: kernels.name };
}

/** Wall-clock GFLOP/s of this rank's FMA loop (best of 3): steal by other tenants shows here, not in CPU time. */
export async function fmaWallEntry(world: World): Promise<number> {
  prepareRankThread(world);
  const a = nativeAddon();
  if (!a) return NaN;
  await world.group.barrier();
  let best = 0;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const flops = a.fmaPeak(2e7);
    best = Math.max(best, flops / ((performance.now() - t0) / 1000) / 1e9);
  }
  return best;
}

/**
 * How much of two cores this shared machine gives us right now: the FMA throughput of two pinned
 * ranks at once over that of one alone (2.0 on an idle host; a busy neighbour lowers it). Every
 * sp-train row records the value measured just before it, so contended cases can be told apart.
 */
export async function coreScaling(): Promise<number> {
  const entry = { module: new URL(import.meta.url), fn: 'fmaWallEntry' };
  const [one] = await runRanks<number>(1, entry, { transport: 'threads', timeoutMs: 0 });
  const two = await runRanks<number>(2, entry, { transport: 'threads', timeoutMs: 0 });
  return (two[0]! + two[1]!) / one!;
}

/**
 * How much of P cores this shared machine gives a training step right now: P independent copies
 * of the one-rank step at once (P pinned worker threads, no communication) against one copy
 * timed just before, as throughput: P x (one copy's step) / (the slowest copy's step when all run),
 * from the medians. 2.0 on two idle cores; memory-bandwidth and cache contention from neighbours
 * lower it, which the FMA-only coreScaling does not see. A scheme's speedup over one rank cannot
 * be expected to exceed it.
 */
export async function stepCeiling(P: number, N: number, oneSec: number, reps: number, warmup: number, backend: SpStepArgs['backend'], window?: number): Promise<number> {
  const args: SpStepArgs = { scheme: 'local', sp: 1, ulysses: 1, N, reps, warmup, backend, alone: true, window };
  const res = await runRanks<SpStepResult>(P, { module: new URL(import.meta.url), fn: 'spStepEntry', args }, { transport: 'threads', timeoutMs: 0 });
  return (P * oneSec) / median(res[0]!.stepSecs);
}

export interface SpTrainBenchOptions {
  Ns?: number[];
  Ps?: number[];
  schemes?: { scheme: SchemeName; ulysses?: number }[];
  reps?: number;
  /** Untimed steps per case (default 1; 0 times the first step). */
  warmup?: number;
  backend?: 'auto' | 'js' | 'native';
  smoke?: boolean;
  /** Skip RSA (a pure-TypeScript, materialised-score baseline) when its scores would exceed this many bytes per rank (default 70 MiB). */
  rsaMaxScoreBytes?: number;
  /**
   * 'each': time the one-rank step again right before every scheme and take that scheme's
   * speedup against it, so drift of a shared machine between cases does not bias the ratios
   * (costs one more one-rank case per scheme). Default 'once'.
   */
  baseline?: 'once' | 'each';
  /**
   * Interleaved rounds per scheme (default 1): each round times the one-rank step and then the
   * scheme's, and the speedup is the median of the rounds' ratios. On a shared host whose speed
   * drifts over seconds, a ratio of two runs taken side by side is what is comparable; every
   * round's numbers go into the row. More than 1 implies baseline 'each'.
   */
  rounds?: number;
  /**
   * Time P independent one-rank steps at once in every round (stepCeiling), and report each
   * scheme's speedup against that ceiling too. Default: on when rounds > 1 (not in smoke mode).
   */
  ceiling?: boolean;
  /** Train with sliding-window attention over this many previous tokens (every case, one rank too). */
  window?: number;
  /** ulysses: exchange heads instead of the shared path (--no-shared-attention). */
  exchange?: boolean;
  log?: (s: string) => void;
}

export const SP_BENCH_SCHEMES: { scheme: SchemeName; ulysses?: number }[] = [
  { scheme: 'ulysses' }, { scheme: 'ring' }, { scheme: 'zigzag' }, { scheme: 'stripe' }, { scheme: 'allgather' }, { scheme: 'rsa' }, { scheme: 'hybrid', ulysses: 2 },
];

export async function runSpTrainBench(o: SpTrainBenchOptions = {}): Promise<Record<string, unknown>[]> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const Ns = o.smoke ? [64] : (o.Ns ?? [4096, 16384]);
  const Ps = o.smoke ? [2] : (o.Ps ?? [2, 4]);
  const reps = o.smoke ? 1 : (o.reps ?? 2);
  const warmup = o.smoke ? 1 : (o.warmup ?? 1);
  const backend = o.backend ?? 'auto';
  const window = o.window;
  const entry = (args: SpStepArgs) => ({ module: new URL(import.meta.url), fn: 'spStepEntry', args: { ...args, window, exchange: o.exchange } });
  const rows: Record<string, unknown>[] = [];
  for (const N of Ns) {
    const oneRank = async () => (await runRanks<SpStepResult>(1, entry({ scheme: 'local', sp: 1, ulysses: 1, N, reps, warmup, backend }), { transport: 'inproc', timeoutMs: 0 }))[0]!;
    const base = await oneRank();
    const sweepBaseSec = median(base.stepSecs);
    log(`N=${N}${window !== undefined ? ` window=${window}` : ''} one rank: ${sweepBaseSec.toFixed(3)} s/step, peak ${(base.peakBytes / 2 ** 20).toFixed(1)} MiB (${base.backend})`);
    const baseRow = { bench: 'sp-train', scheme: 'local', window, N, P: 1, reps, warmup, stepSec: sweepBaseSec, tokensPerSec: N / sweepBaseSec, speedup: 1, peakBytes: base.peakBytes, scratchBytes: base.scratchBytes, backend: base.backend, smoke: !!o.smoke };
    rows.push(baseRow);
    if (!o.smoke) appendResult('sp-train', baseRow);
    for (const P of Ps) {
      for (const s of o.schemes ?? SP_BENCH_SCHEMES) {
        const u = s.scheme === 'hybrid' ? (s.ulysses ?? 2) : 1;
        if (s.scheme === 'hybrid' && P / u < 2) continue;
        if (s.scheme === 'rsa' && 2 * 8 * (N / P) * N * 4 > (o.rsaMaxScoreBytes ?? 70 * 2 ** 20)) {
          log(`  ${s.scheme} P=${P}: skipped (materialised scores exceed the budget)`);
          continue;
        }
        const rounds = o.rounds ?? 1;
        const each = rounds > 1 || o.baseline === 'each';
        const withCeiling = o.ceiling ?? (rounds > 1 && !o.smoke);
        const perRound: { baseSec: number; stepSecs: number[]; scaling?: number; ceiling?: number }[] = [];
        let res: SpStepResult[] = [];
        let rel = 0;
        for (let round = 0; round < rounds; round++) {
          const roundBaseSec = each ? median((await oneRank()).stepSecs) : sweepBaseSec;
          const scaling = o.smoke || cpus().length < 2 ? undefined : await coreScaling();
          res = await runRanks<SpStepResult>(P, entry({ scheme: s.scheme, sp: P, ulysses: u, N, reps, warmup, backend }), { transport: 'threads', timeoutMs: 0 });
          rel = Math.max(rel, Math.abs(res[0]!.firstLoss - base.firstLoss) / Math.abs(base.firstLoss));
          if (!(rel < 1e-4)) throw new Error(`sp bench check: ${s.scheme} P=${P} N=${N} first loss ${res[0]!.firstLoss} != single-rank ${base.firstLoss}`);
          const ceiling = withCeiling ? await stepCeiling(P, N, roundBaseSec, reps, warmup, backend, window) : undefined;
          perRound.push({ baseSec: roundBaseSec, stepSecs: res[0]!.stepSecs, scaling, ceiling });
        }
        const roundSpeedups = perRound.map((x) => x.baseSec / median(x.stepSecs));
        const sec = median(perRound.map((x) => median(x.stepSecs)));
        const speedup = median(roundSpeedups);
        const baseSec = median(perRound.map((x) => x.baseSec));
        const scalings = perRound.map((x) => x.scaling).filter((x): x is number => x !== undefined);
        const scaling = scalings.length > 0 ? Math.min(...scalings) : undefined;
        // speedup over the ceiling of the same round: the fraction of what the host gave P copies
        const ceilings = perRound.map((x) => x.ceiling).filter((x): x is number => x !== undefined);
        const ofCeiling = withCeiling ? median(roundSpeedups.map((x, i) => x / perRound[i]!.ceiling!)) : undefined;
        const peak = Math.max(...res.map((r) => r.peakBytes + r.scratchBytes));
        const comm = res.reduce<Record<string, number>>((acc, r) => {
          for (const [k, v] of Object.entries(r.commBytes)) acc[k] = Math.max(acc[k] ?? 0, v);
          return acc;
        }, {});
        const dims = { B: 1, S: N, T: N / P, H: REFERENCE_MODEL.heads, G: REFERENCE_MODEL.kvHeads, D: REFERENCE_MODEL.width / REFERENCE_MODEL.heads, causal: true, window, scale: 1 };
        const predicted = cost(s.scheme, dims, P, { ulysses: u, shared: !o.exchange }).commBytes;
        const row = {
          bench: 'sp-train', scheme: s.scheme, ulysses: u > 1 ? u : undefined, window, N, P,
          ...(s.scheme === 'ulysses' ? { ulyssesPath: o.exchange ? 'exchange' : 'shared' } : {}), reps, warmup, stepSec: sec, allStepSec: perRound.flatMap((x) => x.stepSecs), tokensPerSec: N / sec,
          speedup, baselineSec: baseSec, baseline: each ? 'each' : 'once', rounds,
          roundSpeedups: rounds > 1 ? roundSpeedups : undefined, roundBaselineSec: rounds > 1 ? perRound.map((x) => x.baseSec) : undefined,
          roundCoreScaling: rounds > 1 ? scalings : undefined,
          roundStepCeiling: withCeiling ? ceilings : undefined, stepCeiling: withCeiling ? median(ceilings) : undefined, speedupOfCeiling: ofCeiling,
          peakBytes: peak, baselinePeakBytes: base.peakBytes + base.scratchBytes,
          commBytesPerRankPerStep: comm, predictedAttnCommBytesPerLayer: predicted, layers: REFERENCE_MODEL.layers,
          firstLossRelErr: rel, backend: res[0]!.backend, cores: cpus().length, coreScaling: scaling, smoke: !!o.smoke,
        };
        rows.push(row);
        // Appended as each case finishes, so an interrupted sweep keeps what it measured.
        if (!o.smoke) appendResult('sp-train', row);
        log(`  ${s.scheme.padEnd(9)} P=${P}: ${sec.toFixed(3)} s/step, ×${speedup.toFixed(2)}${rounds > 1 ? ` (median of ${rounds} interleaved rounds: ${roundSpeedups.map((x) => x.toFixed(2)).join(', ')}; one rank ${baseSec.toFixed(3)} s)` : each ? ` (one rank just before: ${baseSec.toFixed(3)} s)` : ''}, peak/rank ${(peak / 2 ** 20).toFixed(1)} MiB${scaling !== undefined ? `, 2-core FMA scaling ${rounds > 1 ? 'min ' : ''}${scaling.toFixed(2)}` : ''}${ofCeiling !== undefined ? `; ${P} independent one-rank steps at once: ×${median(ceilings).toFixed(2)} (rounds ${ceilings.map((x) => x.toFixed(2)).join(', ')}), so ${(100 * ofCeiling).toFixed(0)} % of that ceiling` : ''}`);
      }
    }
  }
  return rows;
}
