/**
 * Huge pages against plain pages for the SGEMM operands, in one process: the same kernels on
 * buffers from allocBuf (with the native backend, 4 MiB and more go on 2 MiB-aligned huge-page
 * mappings) and on plain Float32Arrays, calls alternating pair by pair so a shared host's drift
 * hits both alike. Checks that both give the same bits, then reports the median huge/plain time
 * ratio per shape and appends one JSON line per shape to bench/results/kernels-huge-ab_*.jsonl.
 *   node dist/bench/kernels/huge-ab.js [--smoke]
 */
import { readFileSync } from 'node:fs';
import { loadNativeKernels, nativeAddon } from '../../src/kernels/native/index.js';
import { allocBuf } from '../../src/tensor/dtype.js';
import { appendResult, median } from '../util.js';

function hugePagesKb(): number {
  try {
    return Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

export function runHugePageAb(smoke = false, log: (s: string) => void = (s) => void process.stderr.write(s + '\n')): Record<string, unknown>[] {
  const loaded = loadNativeKernels();
  if ('error' in loaded) throw new Error(`huge-ab: ${loaded.error}`);
  const k = loaded.kernels;
  const a = nativeAddon()!;
  const fill = (x: Float32Array) => {
    for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
    return x;
  };
  // the kernel bench's SGEMM shapes and the model's forward GEMMs at N=4096
  const shapes: [number, number, number][] = smoke ? [[1024, 1024, 8]] : [[2048, 2048, 2048], [1024, 1024, 1024], [16384, 64, 64], [4096, 256, 768], [4096, 1024, 256]];
  const pairs = smoke ? 1 : 15;
  const rows: Record<string, unknown>[] = [];
  for (const [N, K, M] of shapes) {
    const kb0 = hugePagesKb();
    const huge = [fill(allocBuf('float32', N * K) as Float32Array), fill(allocBuf('float32', M * K) as Float32Array), allocBuf('float32', N * M) as Float32Array];
    const grantedKb = hugePagesKb() - kb0;
    const plain = [fill(new Float32Array(N * K)), fill(new Float32Array(M * K)), new Float32Array(N * M)];
    const reps = smoke ? 1 : Math.max(1, Math.round(2e9 / (2 * N * K * M)));
    const run = ([x, w, out]: Float32Array[]) => {
      const c0 = a.cpuSeconds();
      for (let r = 0; r < reps; r++) k.matmulForward({ out: out! }, { x: x!, weight: w! }, { N, K, M });
      return (a.cpuSeconds() - c0) / reps;
    };
    run(huge);
    run(plain);
    const same = huge[2]!.every((v, i) => v === plain[2]![i]);
    if (!same) throw new Error(`huge-ab ${N}x${K}x${M}: huge-page and plain buffers gave different results`);
    const ratios: number[] = [];
    const th: number[] = [];
    const tp: number[] = [];
    for (let p = 0; p < pairs; p++) {
      // alternate which goes first
      let h: number, q: number;
      if (p % 2) {
        h = run(huge);
        q = run(plain);
      } else {
        q = run(plain);
        h = run(huge);
      }
      th.push(h);
      tp.push(q);
      ratios.push(h / q);
    }
    const flops = 2 * N * K * M;
    const row = { bench: 'kernels-huge-ab', kernel: 'matmulForward', shape: { N, K, M }, pairs, hugeOverPlain: median(ratios), hugeSec: median(th), plainSec: median(tp), gflopsHuge: flops / median(th) / 1e9, gflopsPlain: flops / median(tp) / 1e9, hugePagesGrantedKb: grantedKb, sameBits: same, smoke };
    rows.push(row);
    if (!smoke) appendResult('kernels-huge-ab', row);
    log(`${N}x${K}x${M}: huge/plain time ${median(ratios).toFixed(3)} (median of ${pairs} pairs), same bits; huge pages granted for the inputs: ${grantedKb} kB`);
  }
  return rows;
}

if (process.argv[1]?.endsWith('huge-ab.js')) runHugePageAb(process.argv.includes('--smoke'));
