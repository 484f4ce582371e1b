/**
 * Sequence-parallel attention schemes compared on the same shapes: one attention layer step
 * (forward + backward) per scheme at N = 4K, 16K with P = 2, 4 on the threads transport, against
 * the single-rank kernel. Each case is checked against the single-rank result first, then timed;
 * step time is the slowest rank's forward + backward measured inside the ranks (worker start-up
 * and input transfer excluded; workers are reused so timed runs follow an untimed warm-up). One JSON line per case in bench/results/sp_<host>_<yyyymmdd>.jsonl.
 *
 *   node dist/bench/strategies/sp.js            # full run
 *   node dist/bench/strategies/sp.js --smoke    # tiny shapes, one repetition (CI)
 */
import { fileURLToPath } from 'node:url';
import { distributedAttention, type DistributedAttentionResult } from '../../src/parallel/distributed.js';
import { cost, validateScheme } from '../../src/parallel/index.js';
import type { SchemeName } from '../../src/parallel/types.js';
import type { Buf, DType } from '../../src/tensor/dtype.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { Rng } from '../../src/tensor/rng.js';
import { ThreadsPool } from '../../src/comm/threads/launcher.js';
import { appendResult, median } from '../util.js';

export interface SpBenchOptions {
  Ns?: number[];
  Ps?: number[];
  schemes?: { scheme: SchemeName; ulysses?: number }[];
  B?: number;
  H?: number;
  G?: number;
  D?: number;
  dtype?: DType;
  causal?: boolean;
  /** Timed repetitions (median reported), after one untimed warm-up on the same workers. */
  reps?: number;
  /** Untimed warm-up runs per case (JIT). Default 1. */
  warmup?: number;
  /** RSA materialises [B, H, S/P, S] scores twice in backward: skip it above this many bytes per rank. */
  rsaMaxScoreBytes?: number;
  /** Write JSON lines (default true). */
  write?: boolean;
  log?: (line: string) => void;
}

export interface SpBenchRecord {
  scheme: SchemeName;
  N: number;
  P: number;
  ulysses?: number;
  stepSec: number;
  localStepSec: number;
  speedup: number;
  /** Max over ranks of bytes sent per axis, fwd + bwd. */
  commBytesPerRank: Record<string, number>;
  predictedCommBytes: Record<string, number>;
  predictedFlopsBusiestRank: number;
  peakScratchBytes: number;
  maxRelErr: number;
}

function randBuf(dtype: DType, n: number, seed: number): Buf {
  const b = allocBuf(dtype, n);
  new Rng(seed).fillNormal(b, 1);
  return b;
}

function maxRelErr(a: Buf, e: Buf): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - e[i]!));
    den = Math.max(den, Math.abs(e[i]!));
  }
  return num / (den || 1);
}

/** Slowest rank's forward + backward seconds. */
const stepOf = (r: DistributedAttentionResult) => Math.max(...r.ranks.map((x) => x.forwardSec + x.backwardSec));

export async function runSpBench(opts: SpBenchOptions = {}): Promise<SpBenchRecord[]> {
  const Ns = opts.Ns ?? [4096, 16384];
  const Ps = opts.Ps ?? [2, 4];
  const B = opts.B ?? 1, H = opts.H ?? 4, G = opts.G ?? 2, D = opts.D ?? 16;
  const dtype = opts.dtype ?? 'float32';
  const causal = opts.causal ?? true;
  const reps = opts.reps ?? 1;
  const log = opts.log ?? ((s: string) => console.log(s));
  const schemes = opts.schemes ?? [
    { scheme: 'ulysses' as const },
    { scheme: 'ring' as const },
    { scheme: 'zigzag' as const },
    { scheme: 'stripe' as const },
    { scheme: 'allgather' as const },
    { scheme: 'hybrid' as const, ulysses: 2 },
    { scheme: 'rsa' as const },
  ];
  const beta = dtype === 'float64' ? 8 : 4;
  const records: SpBenchRecord[] = [];
  // One pool of workers per P, reused across cases so timed runs find a warm JIT.
  const pool = new Map<number, ThreadsPool>();
  const pools = (P: number) => {
    if (!pool.has(P)) pool.set(P, new ThreadsPool(P));
    return pool.get(P)!;
  };
  try {
    for (const N of Ns) {
      const q = randBuf(dtype, B * N * H * D, 1);
      const k = randBuf(dtype, B * N * G * D, 2);
      const v = randBuf(dtype, B * N * G * D, 3);
      const dOut = randBuf(dtype, B * N * H * D, 4);
      const base = { q, k, v, dOut, B, S: N, H, G, D, causal };
      const warmup = opts.warmup ?? 1;
      const localRuns: DistributedAttentionResult[] = [];
      for (let i = 0; i < warmup + reps; i++) {
        const r = await distributedAttention({ ...base, scheme: 'local', P: 1, transport: 'threads', pool: pools(1), timeoutMs: 0 });
        if (i >= warmup) localRuns.push(r);
      }
      const ref = localRuns[0]!;
      const localStepSec = median(localRuns.map(stepOf));
      log(`N=${N} local: ${localStepSec.toFixed(3)} s`);
      for (const P of Ps) {
        for (const s of schemes) {
          const name = `${s.scheme}${s.ulysses ? `(u=${s.ulysses})` : ''} N=${N} P=${P}`;
          try {
            validateScheme(s.scheme, { S: N, P, H, G, ulysses: s.ulysses });
          } catch (e) {
            log(`${name}: skipped (${(e as Error).message})`);
            continue;
          }
          if (s.scheme === 'rsa' && 2 * B * H * (N / P) * N * beta > (opts.rsaMaxScoreBytes ?? 512 * 2 ** 20)) {
            log(`${name}: skipped (score matrices too large)`);
            continue;
          }
          const runs: DistributedAttentionResult[] = [];
          for (let i = 0; i < warmup + reps; i++) {
            const r = await distributedAttention({ ...base, scheme: s.scheme, ulysses: s.ulysses, P, transport: 'threads', pool: pools(P), timeoutMs: 0 });
            if (i >= warmup) runs.push(r);
          }
          const r = runs[0]!;
          const err = Math.max(...(['out', 'lse', 'dq', 'dk', 'dv'] as const).map((f) => maxRelErr(r[f]!, ref[f]!)));
          if (!(err < (dtype === 'float64' ? 1e-9 : 1e-4))) throw new Error(`${name}: result differs from one rank (max rel err ${err})`);
          const comm: Record<string, number> = {};
          for (const rk of r.ranks) for (const [a, b] of Object.entries(rk.commBytes)) comm[a] = Math.max(comm[a] ?? 0, b);
          const d = { B, S: N, T: N / P, H, G, D, causal, scale: 1 / Math.sqrt(D) };
          const c = cost(s.scheme, d, P, { bytesPerElement: beta, ulysses: s.ulysses });
          const stepSec = median(runs.map(stepOf));
          const rec: SpBenchRecord = {
            scheme: s.scheme,
            N,
            P,
            ...(s.ulysses ? { ulysses: s.ulysses } : {}),
            stepSec,
            localStepSec,
            speedup: localStepSec / stepSec,
            commBytesPerRank: comm,
            predictedCommBytes: c.commBytes,
            predictedFlopsBusiestRank: c.flops,
            peakScratchBytes: Math.max(...r.ranks.map((x) => x.scratchBytes)),
            maxRelErr: err,
          };
          records.push(rec);
          log(`${name}: ${stepSec.toFixed(3)} s, speedup ${rec.speedup.toFixed(2)}x, comm/rank ${JSON.stringify(comm)}, scratch ${rec.peakScratchBytes} B`);
          if (opts.write ?? true) appendResult('sp', { bench: 'sp', B, H, G, D, dtype, causal, transport: 'threads', kernels: 'js', reps, warmup, ...rec });
        }
      }
    }
  } finally {
    for (const p of pool.values()) await p.close();
  }
  return records;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const smoke = process.argv.includes('--smoke');
  await runSpBench(smoke ? { Ns: [64], Ps: [2], H: 2, G: 1, D: 4, reps: 1, warmup: 0, write: false } : {});
}
