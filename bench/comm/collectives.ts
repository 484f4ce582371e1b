/**
 * Collective bandwidth on the threads transport, next to a memcpy (TypedArray.set) of the same
 * size measured in the same run. Sizes follow nccl-tests: S is the allReduce/broadcast buffer,
 * the allGather OUTPUT, the reduceScatter/allToAll INPUT, and each rank's sendRecv message (a
 * 2-rank exchange: both ranks send S and receive S). algbw = S / time (median over iterations of
 * the slowest rank); busbw scales algbw like nccl-tests; ratio = algbw / memcpy GB/s.
 * Each case runs twice: with ordinary buffers (each byte is staged in shared memory, then copied
 * out: two copies) and with buffers from ProcessGroup.allocBuffer (peers read them in place: one
 * copy), the path the SP schemes use.
 *
 *   node dist/bench/comm/collectives.js            # 1, 16, 64 MB on 2 ranks, writes results
 *   node dist/bench/comm/collectives.js --smoke    # one iteration of 1 MB, writes nothing
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { cpus, hostname, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { runRanks, ThreadsPool } from '../../src/comm/index.js';
import type { World } from '../../src/comm/types.js';
import { prepareRankThread } from '../../src/parallel/rank-thread.js';
import { nativeBulkCopy } from '../../src/kernels/native/index.js';
import { median, resultsPath } from '../util.js';

export const BENCH_OPS = ['allReduce', 'allGather', 'reduceScatter', 'allToAll', 'sendRecv', 'broadcast'] as const;
export type BenchOp = (typeof BENCH_OPS)[number];
/** ordinary: plain typed arrays (staged through shared memory); shared: from allocBuffer (zero-copy). */
export type BufferKind = 'ordinary' | 'shared';

export interface CommBenchOptions {
  ranks?: number;
  sizesMB?: number[];
  ops?: readonly BenchOp[];
  warmup?: number;
  iters?: number;
  /** Which buffers to time (default both). */
  buffers?: readonly BufferKind[];
  /** Append JSON lines here; null = do not write. Default bench/results/comm_<host>_<yyyymmdd>.jsonl. */
  outFile?: string | null;
}

export interface CommBenchResult {
  bench: 'comm/collectives';
  transport: 'threads';
  op: BenchOp;
  buffers: BufferKind;
  ranks: number;
  bytes: number;
  iters: number;
  medianSec: number;
  algGBps: number;
  busGBps: number;
  memcpyGBps: number;
  ratioToMemcpy: number;
  /**
   * The hardware's part: rank 0 copying (native memmove) a buffer that rank 1 wrote, with no
   * protocol, in the same run — what a one-copy collective cannot beat (at 1 MB the data sits in
   * the other core's cache, which the one-thread memcpy above never pays for).
   */
  crossCoreCopyGBps: number;
  ratioToCrossCoreCopy: number;
  node: string;
  host: string;
  cpus: number;
  /** 1-minute load average at the start of the case: the host may be shared. */
  load1: number;
  date: string;
}

interface RankArgs {
  op: BenchOp;
  buffers: BufferKind;
  bytes: number;
  warmup: number;
  iters: number;
}

/** Exact-in-float32 input of rank r: small integers. */
function fill(a: Float32Array, r: number): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = ((i * 7 + r * 13) % 61) - 30;
  return a;
}

/** Runs on every rank: check once, then time. Returns per-iteration seconds, or throws. */
export async function benchRank(world: World, args: RankArgs): Promise<number[]> {
  prepareRankThread(world); // pinned, native copies: as in training
  const g = world.group;
  const P = g.size;
  const r = g.rank;
  const S = args.bytes / 4;
  const peer = (r + 1) % P;
  const from = (r - 1 + P) % P;
  let call: () => Promise<void>;
  let verify: () => string | null;
  const mk = (n: number) => (args.buffers === 'shared' ? g.allocBuffer('float32', n) : new Float32Array(n));
  const x = fill(mk(args.op === 'allGather' ? S / P : S), r);
  const out = mk(args.op === 'reduceScatter' ? S / P : S);
  const expectAt = (i: number): number => {
    const v = (k: number, j: number) => ((j * 7 + k * 13) % 61) - 30;
    switch (args.op) {
      case 'allReduce': {
        let s = 0;
        for (let k = 0; k < P; k++) s += v(k, i);
        return s;
      }
      case 'allGather':
        return v(Math.floor(i / (S / P)), i % (S / P));
      case 'reduceScatter': {
        let s = 0;
        for (let k = 0; k < P; k++) s += v(k, r * (S / P) + i);
        return s;
      }
      case 'allToAll': {
        const n = S / P;
        return v(Math.floor(i / n), r * n + (i % n));
      }
      case 'sendRecv':
        return v(from, i);
      case 'broadcast':
        return v(0, i);
    }
  };
  const buf = args.op === 'allReduce' || args.op === 'broadcast' ? x : out;
  switch (args.op) {
    case 'allReduce':
      call = () => g.allReduce(x);
      break;
    case 'allGather':
      call = () => g.allGather(out, x);
      break;
    case 'reduceScatter':
      call = () => g.reduceScatter(out, x);
      break;
    case 'allToAll':
      call = () => g.allToAll(out, x);
      break;
    case 'sendRecv':
      call = () => g.sendRecv(x, peer, out, from);
      break;
    case 'broadcast':
      call = () => g.broadcast(x, 0);
      break;
  }
  verify = () => {
    for (let i = 0; i < buf.length; i += 1 + (i % 7)) if (buf[i] !== expectAt(i)) return `${args.op}: [${i}] = ${buf[i]}, expected ${expectAt(i)}`;
    return null;
  };
  await call();
  const bad = verify();
  if (bad) throw new Error(`rank ${world.rank}: wrong result before timing: ${bad}`);
  const times: number[] = [];
  for (let it = 0; it < args.warmup + args.iters; it++) {
    if (args.op === 'allReduce') fill(x, r); // keep values bounded (in place)
    await g.barrier();
    const t0 = performance.now();
    await call();
    if (it >= args.warmup) times.push((performance.now() - t0) / 1000);
  }
  g.releaseBuffer(x);
  g.releaseBuffer(out);
  return times;
}

/**
 * Rank 1 fills a shared buffer once; rank 0 then copies it into its own buffer `iters` times with
 * the addon's memmove (barrier before each copy, as the collectives' loop has). Rank 0's copy
 * times; the same access pattern as sendRecv's receiver, without the protocol.
 */
export async function crossCopyRank(world: World, a: { src: SharedArrayBuffer; dst: SharedArrayBuffer; warmup: number; iters: number }): Promise<number[]> {
  prepareRankThread(world);
  const g = world.group;
  const src = new Float32Array(a.src);
  const dst = new Float32Array(a.dst);
  const copy = nativeBulkCopy() ?? ((d: ArrayBufferView, s: ArrayBufferView) => (d as Float32Array).set(s as Float32Array));
  if (world.rank === 1) fill(src, 1);
  const times: number[] = [];
  for (let it = 0; it < a.warmup + a.iters; it++) {
    await g.barrier();
    if (world.rank !== 0) continue;
    const t0 = performance.now();
    copy(dst, src);
    if (it >= a.warmup) times.push((performance.now() - t0) / 1000);
  }
  await g.barrier();
  if (world.rank === 0 && dst[7] !== src[7]) throw new Error('cross-core copy: wrong result');
  return times;
}

/** TypedArray.set of `bytes`, median seconds after warm-up, in this thread. */
export function memcpySec(bytes: number, iters: number): number {
  const a = fill(new Float32Array(bytes / 4), 1);
  const b = new Float32Array(bytes / 4);
  b.set(a);
  const ts: number[] = [];
  for (let i = 0; i < Math.max(iters, 1); i++) {
    const t0 = performance.now();
    b.set(a);
    ts.push((performance.now() - t0) / 1000);
  }
  return median(ts);
}

function busFactor(op: BenchOp, P: number): number {
  if (op === 'allReduce') return (2 * (P - 1)) / P;
  if (op === 'allGather' || op === 'reduceScatter' || op === 'allToAll') return (P - 1) / P;
  return 1;
}

export function defaultResultsFile(now = new Date()): string {
  return resultsPath('comm', now);
}

export async function runCommBench(opts: CommBenchOptions = {}): Promise<CommBenchResult[]> {
  const P = opts.ranks ?? 2;
  const sizes = opts.sizesMB ?? [1, 16, 64];
  const ops = opts.ops ?? BENCH_OPS;
  const kinds = opts.buffers ?? (['ordinary', 'shared'] as const);
  const warmup0 = opts.warmup ?? 3;
  const iters0 = opts.iters ?? 11;
  const outFile = opts.outFile === undefined ? defaultResultsFile() : opts.outFile;
  const pool = new ThreadsPool(P);
  const results: CommBenchResult[] = [];
  try {
    for (const mb of sizes) {
      const bytes = Math.round(mb * 2 ** 20 / (4 * P)) * 4 * P; // divisible into P float32 chunks
      // Small messages need more calls to reach steady state: the protocol's JavaScript is only
      // optimised by V8 after some dozens of calls (1 MB sendRecv: ~200 µs per call over the first
      // 14, ~90 µs from the 60th on). At least ~32 MiB moved in warm-up and in the timed calls.
      const reps = opts.iters === undefined ? Math.ceil((32 * 2 ** 20) / Math.max(bytes, 1)) : 1;
      const warmup = Math.max(warmup0, reps);
      const iters = Math.max(iters0, reps);
      const memSec = memcpySec(bytes, iters);
      const memcpyGBps = bytes / memSec / 1e9;
      const cross = P >= 2 ? await runRanks<number[]>(2, { module: import.meta.url, fn: 'crossCopyRank', args: { src: new SharedArrayBuffer(bytes), dst: new SharedArrayBuffer(bytes), warmup, iters } }, { transport: 'threads', pool, timeoutMs: 120_000 }) : null;
      const crossCoreCopyGBps = cross ? bytes / median(cross[0]!) / 1e9 : NaN;
      for (const op of ops) for (const buffers of kinds) {
        const per = await runRanks<number[]>(P, { module: import.meta.url, fn: 'benchRank', args: { op, buffers, bytes, warmup, iters } satisfies RankArgs }, { transport: 'threads', pool, timeoutMs: 120_000 });
        const slowest = per[0]!.map((_, i) => Math.max(...per.map((t) => t[i]!)));
        const medianSec = median(slowest);
        const algGBps = bytes / medianSec / 1e9;
        const res: CommBenchResult = {
          bench: 'comm/collectives', transport: 'threads', op, buffers, ranks: P, bytes, iters, medianSec,
          algGBps, busGBps: algGBps * busFactor(op, P), memcpyGBps, ratioToMemcpy: algGBps / memcpyGBps, crossCoreCopyGBps, ratioToCrossCoreCopy: algGBps / crossCoreCopyGBps,
          node: process.version, host: hostname(), cpus: cpus().length, load1: loadavg()[0]!, date: new Date().toISOString(),
        };
        results.push(res);
        if (outFile) {
          mkdirSync(dirname(outFile), { recursive: true });
          appendFileSync(outFile, JSON.stringify(res) + '\n');
        }
      }
    }
  } finally {
    await pool.close();
  }
  return results;
}

async function main(argv: string[]): Promise<void> {
  const smoke = argv.includes('--smoke');
  const res = await runCommBench(smoke ? { sizesMB: [1], warmup: 0, iters: 1, outFile: null } : {});
  for (const r of res) {
    console.log(`${r.op.padEnd(14)} ${r.buffers.padEnd(8)} ${(r.bytes / 2 ** 20).toFixed(0).padStart(3)} MB  alg ${r.algGBps.toFixed(2).padStart(6)} GB/s  bus ${r.busGBps.toFixed(2).padStart(6)} GB/s  memcpy ${r.memcpyGBps.toFixed(2).padStart(6)} GB/s  ratio ${r.ratioToMemcpy.toFixed(2)}  cross-core copy ${r.crossCoreCopyGBps.toFixed(2).padStart(6)} GB/s  ratio ${r.ratioToCrossCoreCopy.toFixed(2)}`);
  }
  if (!smoke) console.log(`appended ${res.length} lines to ${defaultResultsFile()}`);
}

if (isMainThread && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
