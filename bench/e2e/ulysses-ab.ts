/**
 * The reference model's training step under Ulysses on P worker-thread ranks, the shared path
 * (kernels on the members' tensors in place, parallel/ulysses-shared.ts) against the head
 * exchange, in one process: the two alternate case by case on the same ranks, so a shared host's
 * drift hits both alike. Checks first that both give the same first loss, then appends one JSON
 * line (median step wall time of the slower rank, median CPU seconds per rank, peak memory) to
 * bench/results/ulysses-ab_<host>_<date>.jsonl.
 *   node dist/bench/e2e/ulysses-ab.js [--n 4096] [--pairs 8] [--kv-heads G] [--smoke]
 * (--kv-heads: a GQA variant of the model; G < P is where the exchange replicates kv heads)
 */
import { isMainThread } from 'node:worker_threads';
import type { World } from '../../src/comm/types.js';
import { runRanks } from '../../src/comm/run.js';
import { spStepEntry, type SpStepArgs, type SpStepResult } from './sp-train.js';
import { appendResult, median } from '../util.js';

interface AbArgs extends SpStepArgs {
  pairs: number;
}

interface AbRank {
  wall: { shared: number[]; exchange: number[] };
  cpu: { shared: number[]; exchange: number[] };
  loss: { shared: number; exchange: number };
  peak: { shared: number; exchange: number };
}

export async function ulyssesAbEntry(world: World, a: AbArgs): Promise<AbRank> {
  const r: AbRank = { wall: { shared: [], exchange: [] }, cpu: { shared: [], exchange: [] }, loss: { shared: NaN, exchange: NaN }, peak: { shared: 0, exchange: 0 } };
  for (let i = 0; i < a.pairs; i++) {
    for (const mode of i % 2 ? (['exchange', 'shared'] as const) : (['shared', 'exchange'] as const)) {
      const s: SpStepResult = await spStepEntry(world, { ...a, exchange: mode === 'exchange' });
      r.wall[mode].push(...s.stepSecs);
      r.cpu[mode].push(...s.stepCpuSecs);
      r.loss[mode] = s.firstLoss;
      r.peak[mode] = s.peakBytes + s.scratchBytes;
    }
  }
  return r;
}

export async function runUlyssesAb(o: { N?: number; P?: number; pairs?: number; kvHeads?: number; smoke?: boolean } = {}): Promise<Record<string, unknown>> {
  const smoke = !!o.smoke;
  const N = smoke ? 64 : (o.N ?? 4096);
  const P = o.P ?? 2;
  const pairs = smoke ? 1 : (o.pairs ?? 8);
  const args: AbArgs = { scheme: 'ulysses', sp: P, ulysses: 1, N, reps: 2, warmup: 1, backend: 'auto', pairs, ...(o.kvHeads !== undefined ? { kvHeads: o.kvHeads } : {}) };
  const res = await runRanks<AbRank>(P, { module: new URL(import.meta.url), fn: 'ulyssesAbEntry', args }, { transport: 'threads', timeoutMs: 0 });
  const r0 = res[0]!;
  const rel = Math.abs(r0.loss.shared - r0.loss.exchange) / Math.abs(r0.loss.exchange);
  if (!(rel < 1e-4)) throw new Error(`ulysses-ab: shared first loss ${r0.loss.shared} != exchange ${r0.loss.exchange}`);
  // wall: every rank's step times are already the max over ranks (spStepEntry); CPU: per rank
  const wall = (m: 'shared' | 'exchange') => median(r0.wall[m]);
  const cpu = res.map((r) => median(r.cpu.shared) / median(r.cpu.exchange));
  return {
    bench: 'ulysses-ab', N, P, pairs, reps: 2, kvHeads: o.kvHeads ?? null,
    sharedSec: wall('shared'), exchangeSec: wall('exchange'), sharedOverExchange: wall('shared') / wall('exchange'),
    sharedCpuSec: res.map((r) => median(r.cpu.shared)), exchangeCpuSec: res.map((r) => median(r.cpu.exchange)), cpuSharedOverExchange: cpu,
    sharedPeakBytes: r0.peak.shared, exchangePeakBytes: r0.peak.exchange,
    allSharedSec: r0.wall.shared, allExchangeSec: r0.wall.exchange, firstLossRelDiff: rel, smoke,
  };
}

if (isMainThread && process.argv[1]?.endsWith('ulysses-ab.js')) {
  const argv = process.argv.slice(2);
  const num = (f: string) => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : undefined);
  const smoke = argv.includes('--smoke');
  const rec = await runUlyssesAb({ N: num('--n'), pairs: num('--pairs'), kvHeads: num('--kv-heads'), smoke });
  const f = (x: unknown) => (x as number).toFixed(3);
  console.log(`ulysses N=${rec.N} P=${rec.P}${rec.kvHeads === null ? '' : ` G=${rec.kvHeads}`}: shared ${f(rec.sharedSec)} s/step, exchange ${f(rec.exchangeSec)} s (${f(rec.sharedOverExchange)}x); CPU per rank ${(rec.cpuSharedOverExchange as number[]).map(f).join(', ')}x; peak/rank ${((rec.sharedPeakBytes as number) / 2 ** 20).toFixed(1)} vs ${((rec.exchangePeakBytes as number) / 2 ** 20).toFixed(1)} MiB`);
  if (!smoke) console.log(`results: ${appendResult('ulysses-ab', rec)}`);
}
