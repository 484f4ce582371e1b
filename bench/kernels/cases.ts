/**
 * Benchmark cases of the native kernels: SGEMM and attention forward / forward+backward. Each case
 * first checks its result against the js backend on a small slice, then times (warm-up, median).
 */
import { jsKernels } from '../../src/kernels/js/index.js';
import type { Kernels } from '../../src/kernels/types.js';
import { nativeAddon } from '../../src/kernels/native/index.js';
import { median } from '../util.js';
import { allocBuf } from '../../src/tensor/dtype.js';

/**
 * Wall-clock and process CPU seconds of each timed run. The machine is shared (other builds and
 * tests time-slice the same cores), so CPU seconds — time our threads actually ran — measure the
 * kernels; wall seconds measure what a user saw.
 */
export interface Timing {
  runsSec: number[];
  medianSec: number;
  cpuRunsSec: number[];
  medianCpuSec: number;
  /**
   * The FMA rate of one core (GFLOP/s per CPU second, probeFma) right before each timed run and
   * once after the last: runs + 1 values, run i sits between probes i and i + 1.
   */
  probes: number[];
}

/**
 * The FMA loop's rate on this thread right now, GFLOP/s per CPU second, over about `ms` ms. A
 * neighbour on the core's other hyperthread, or a lower turbo, slows it and a compute-bound kernel
 * alike, where CPU time does not see them: each timed run is set against the probes around it.
 */
export function probeFma(ms = 0.6): number {
  return fmaRate(Math.round(4.7e5 * ms));
}

/** GFLOP/s per CPU second of `iters` iterations of the addon's FMA loop on this thread. */
export function fmaRate(iters: number): number {
  const a = nativeAddon()!;
  let flops = 0;
  const [, cpu] = measure(() => (flops = a.fmaPeak(iters)));
  return flops / Math.max(cpu, 1e-9) / 1e9;
}

/**
 * Probe length after a run of `sec` seconds: a tenth of it, 0.6-50 ms, so that a probe samples
 * the host over a comparable stretch (a 0.6 ms probe next to a 500 ms run once caught a busy
 * moment the run mostly missed and read the run at 114 %).
 */
export function probeMsAfter(sec: number): number {
  return Math.min(50, Math.max(0.6, 100 * sec));
}

/**
 * Runs fn once; returns [wall, cpu] seconds. CPU time is that of the calling thread and its native
 * pool threads only (not node's GC/compiler threads), from CLOCK_THREAD_CPUTIME_ID.
 */
export function measure(fn: () => void): [number, number] {
  const a = nativeAddon()!;
  const c0 = a.cpuSeconds();
  const t0 = performance.now();
  fn();
  const wall = (performance.now() - t0) / 1e3;
  return [wall, a.cpuSeconds() - c0];
}

function timing(wall: number[], cpu: number[], probes: number[]): Timing {
  return { runsSec: wall, medianSec: median(wall), cpuRunsSec: cpu, medianCpuSec: median(cpu), probes };
}

/** n uniform values in [-0.5, 0.5), allocated as the model's buffers are (allocBuf: large ones on huge pages). */
export function rand(n: number, seed: number): Float32Array {
  const a = allocBuf('float32', n) as Float32Array;
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    a[i] = (x >>> 0) / 4294967296 - 0.5;
  }
  return a;
}

/** Largest |a − e| relative to max |e| (0 when both are empty). */
function relErr(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < e.length; i++) {
    if (e[i] === -Infinity && a[i] === -Infinity) continue;
    d = Math.max(d, Math.abs(a[i]! - e[i]!));
    m = Math.max(m, Math.abs(e[i]!));
  }
  return Number.isNaN(d) ? Infinity : d / (m || 1);
}

/** Runs fn `warm` times untimed, then `runs` times timed. */
export function time(fn: () => void, warm: number, runs: number): Timing {
  let pms = 0.6;
  for (let i = 0; i < warm; i++) pms = probeMsAfter(measure(fn)[0]);
  const wall: number[] = [], cpu: number[] = [], probes: number[] = [];
  for (let i = 0; i < runs; i++) {
    probes.push(probeFma(pms));
    const [w, c] = measure(fn);
    wall.push(w);
    cpu.push(c);
    pms = probeMsAfter(w);
  }
  probes.push(probeFma(pms));
  return timing(wall, cpu, probes);
}

export interface CaseResult {
  flops: number;
  bytes: number;
  checkRelErr: number;
  timing: Timing;
  /** Second timing for fused cases (attention: forward alone inside the forward+backward loop). */
  extra?: { name: string; flops: number; timing: Timing };
  /** Attention: the forward again in a loop of its own (the caches hold the forward's data). */
  alone?: Timing;
}

/** out[N, M] = x[N, K] · w[M, K]ᵀ; checked on its first and last rows against js. */
export function gemmCase(k: Kernels, N: number, K: number, M: number, runs: number): CaseResult {
  const x = rand(N * K, 1), w = rand(M * K, 2), out = allocBuf('float32', N * M) as Float32Array;
  k.matmulForward({ out }, { x, weight: w }, { N, K, M });
  const rows = [0, 1, N - 1];
  const xs = new Float32Array(rows.length * K);
  rows.forEach((r, i) => xs.set(x.subarray(r * K, (r + 1) * K), i * K));
  const ref = new Float64Array(rows.length * M);
  jsKernels.matmulForward({ out: ref }, { x: Float64Array.from(xs), weight: Float64Array.from(w) }, { N: rows.length, K, M });
  const got = new Float32Array(rows.length * M);
  rows.forEach((r, i) => got.set(out.subarray(r * M, (r + 1) * M), i * M));
  const timing = time(() => k.matmulForward({ out }, { x, weight: w }, { N, K, M }), 1, runs);
  return { flops: 2 * N * K * M, bytes: 4 * (N * K + M * K + N * M), checkRelErr: relErr(got, ref), timing };
}

/**
 * Self-attention of one sequence (B = 1, H = G = 1) of N tokens, head dim D. Forward FLOPs 4N²D,
 * backward 10N²D, causal halves both. Each timed iteration runs forward, then delta + backward;
 * the forward alone and the sum are reported, and then the forward in its own loop. Checked on
 * the last 16 queries against js.
 */
export function attnCase(k: Kernels, N: number, D: number, causal: boolean, runs: number, warm = 0): CaseResult {
  const q = rand(N * D, 3), kk = rand(N * D, 4), v = rand(N * D, 5), dOut = rand(N * D, 6);
  const pos = Int32Array.from({ length: N }, (_, i) => i);
  const d = { B: 1, Tq: N, Tk: N, H: 1, G: 1, D, scale: 1 / Math.sqrt(D), mask: { causal } };
  const f32 = (n: number) => allocBuf('float32', n) as Float32Array;
  const out = f32(N * D), lse = f32(N), delta = f32(N);
  const dq = f32(N * D), dk = f32(N * D), dv = f32(N * D);
  const fwd = () => {
    out.fill(0);
    lse.fill(-Infinity);
    k.attnForward({ out, lse }, { q, k: kk, v, qPos: pos, kPos: pos }, d);
  };
  const bwd = () => {
    k.attnDelta({ delta }, { dOut, out }, { B: 1, T: N, H: 1, D });
    k.attnBackward({ dq, dk, dv }, { dOut, q, k: kk, v, out, lse, delta, qPos: pos, kPos: pos }, d);
  };
  // check: the last S query rows against js (dq of a query row depends only on that row's inputs)
  fwd();
  dq.fill(0);
  bwd();
  const S = Math.min(16, N), t0 = N - S;
  const f64 = (a: Float32Array) => Float64Array.from(a);
  const sd = { ...d, Tq: S };
  const ro = new Float64Array(S * D), rl = new Float64Array(S).fill(-Infinity);
  const qs = f64(q.subarray(t0 * D)), kd = f64(kk), vd = f64(v), qPos = pos.subarray(t0);
  jsKernels.attnForward({ out: ro, lse: rl }, { q: qs, k: kd, v: vd, qPos, kPos: pos }, sd);
  const dOs = f64(dOut.subarray(t0 * D)), rdelta = new Float64Array(S);
  jsKernels.attnDelta({ delta: rdelta }, { dOut: dOs, out: ro }, { B: 1, T: S, H: 1, D });
  const rdq = new Float64Array(S * D);
  jsKernels.attnBackward({ dq: rdq, dk: new Float64Array(N * D), dv: new Float64Array(N * D) },
    { dOut: dOs, q: qs, k: kd, v: vd, out: ro, lse: rl, delta: rdelta, qPos, kPos: pos }, sd);
  const checkRelErr = Math.max(relErr(out.subarray(t0 * D), ro), relErr(lse.subarray(t0), rl), relErr(dq.subarray(t0 * D), rdq));

  // Untimed iterations first: the first few after a change of shape run up to 1.5x slower on
  // this VM (N=1024 D=128 causal: 3.3 ms for 4 runs, then 2.27 ms), which a median of 9 does not hide.
  let pms = 0.6;
  for (let r = 0; r < warm; r++) pms = probeMsAfter(measure(fwd)[0] + measure(bwd)[0]);
  const tf: number[] = [], tt: number[] = [], cf: number[] = [], ct: number[] = [], probes: number[] = [];
  for (let r = 0; r < runs; r++) {
    probes.push(probeFma(pms));
    const [wf, xf] = measure(fwd);
    const [wb, xb] = measure(bwd);
    tf.push(wf);
    cf.push(xf);
    tt.push(wf + wb);
    ct.push(xf + xb);
    pms = probeMsAfter(wf + wb);
  }
  probes.push(probeFma(pms));
  // The forward again in a loop of its own, as FlashAttention's benchmark times it: in the loop
  // above each forward follows a backward, whose 2.5x the work leaves its own data in the caches.
  const alone = time(fwd, warm > 0 ? 1 : 0, runs);
  const frac = causal ? 0.5 : 1;
  return {
    alone,
    flops: 14 * N * N * D * frac,
    bytes: 4 * 8 * N * D,
    checkRelErr,
    timing: timing(tt, ct, probes),
    extra: { name: 'attn_fwd', flops: 4 * N * N * D * frac, timing: timing(tf, cf, probes) },
  };
}
