/**
 * Loading the C++ addon (build/Release/seqpar_native.node, built from native/ by binding.gyp) and
 * its raw, positional interface. Arguments are checked again in C++ (a wrong size is a RangeError,
 * never a write past the end of a buffer). Float32Array views are used in place, including
 * subarrays and SharedArrayBuffer-backed views.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Isa = 'avx512' | 'avx2' | 'scalar';
type F32 = Float32Array;
type Opt = Float32Array | null;
type W = number | undefined;

/** The addon's exports (native/addon.cc, native/addon_attn.cc). */
export interface NativeAddon {
  matmulForward(out: F32, x: F32, w: F32, bias: Opt, N: number, K: number, M: number): void;
  /** overwrite: dx = dOut·W instead of += (dw, db always accumulate). */
  matmulBackward(dx: Opt, dw: Opt, db: Opt, dOut: F32, x: F32, w: F32, N: number, K: number, M: number, overwrite: boolean): void;
  layerNormForward(out: F32, mean: F32, rstd: F32, x: F32, w: F32, b: F32, N: number, C: number, eps: number): void;
  layerNormBackward(dx: F32, dw: F32, db: F32, dOut: F32, x: F32, w: F32, mean: F32, rstd: F32, N: number, C: number): void;
  rmsNormForward(out: F32, rstd: F32, x: F32, w: F32, N: number, C: number, eps: number): void;
  rmsNormBackward(dx: F32, dw: F32, dOut: F32, x: F32, w: F32, rstd: F32, N: number, C: number): void;
  geluForward(out: F32, x: F32, n: number): void;
  geluBackward(dx: F32, dOut: F32, x: F32, n: number, overwrite: boolean): void;
  swigluForward(out: F32, x: F32, N: number, F: number): void;
  swigluBackward(dx: F32, dOut: F32, x: F32, N: number, F: number, overwrite: boolean): void;
  embeddingForward(out: F32, tokens: Int32Array, w: F32, N: number, C: number): void;
  embeddingBackward(dw: F32, dOut: F32, tokens: Int32Array, N: number, C: number): void;
  /** backward: out += Rᵀx, or out = Rᵀx with overwrite; forward: out = Rx. */
  rope(out: F32, x: F32, pos: Int32Array, B: number, T: number, H: number, D: number, base: number, backward: boolean, overwrite?: boolean): void;
  crossEntropyForward(losses: F32, lse: F32, logits: F32, targets: Int32Array, N: number, V: number, ignore: number): number;
  crossEntropyBackward(dLogits: F32, logits: F32, lse: F32, targets: Int32Array, N: number, V: number, ignore: number, scale: number): void;
  adamwStep(p: F32, m: F32, v: F32, g: F32, n: number, lr: number, b1: number, b2: number, eps: number, wd: number, step: number): void;
  sumSquares(x: F32): number;
  scale(x: F32, s: number): void;
  axpy(y: F32, x: F32, a: number): void;
  /** dst.set(src) for equal byte lengths, any typed arrays (memmove). */
  copyBytes?(dst: ArrayBufferView, src: ArrayBufferView): void;
  /** dst[i] += src[i]; both Float32Array or both Float64Array, same length. */
  addInto?(dst: Float32Array | Float64Array, src: Float32Array | Float64Array): void;
  /** A zeroed ArrayBuffer of `bytes` on its own 2 MiB-aligned mapping advised for huge pages, or null. */
  allocHuge?(bytes: number): ArrayBuffer | null;
  /** madvise(MADV_HUGEPAGE) over the whole 2 MiB pages of [view's data, + bytes); whether it was accepted. */
  adviseHugeRange?(view: ArrayBufferView, bytes: number): boolean;
  /** Address of a typed array's first byte (the threads transport's one-copy reads). */
  addressOf?(ta: ArrayBufferView): number;
  /** Copies or adds dst.byteLength bytes from a peer's address while ctl says the peer still offers them (native/addon.cc). */
  rawRead?(dst: ArrayBufferView, addr: number, add: boolean, ctl: Int32Array, readingIdx: number, closedIdx: number, seq: number, abortIdx: number): boolean;
  /** For r < n: dst row (dRows ? dRows[r] : r) = (add: +=) src row (sRows ? sRows[r] : r), rows of `row` elements. */
  copyRows?(dst: ArrayBufferView, dRows: Int32Array | null, src: ArrayBufferView, sRows: Int32Array | null, n: number, row: number, add: boolean): void;
  /** copyRows from a peer's address under rawRead's protocol. */
  rawReadRows?(dst: ArrayBufferView, dRows: Int32Array | null, addr: number, sRows: Int32Array | null, n: number, row: number, add: boolean, ctl: Int32Array, readingIdx: number, closedIdx: number, seq: number, abortIdx: number): boolean;
  attnForward(out: F32, lse: F32, q: F32, k: F32, v: F32, qPos: Int32Array, kPos: Int32Array,
    B: number, Tq: number, Tk: number, H: number, G: number, D: number, scale: number, causal: boolean, left: W, right: W, h0?: number, h1?: number): void;
  attnBackward(dq: F32, dk: F32, dv: F32, dOut: F32, q: F32, k: F32, v: F32, out: F32, lse: F32, delta: F32,
    qPos: Int32Array, kPos: Int32Array, B: number, Tq: number, Tk: number, H: number, G: number, D: number,
    scale: number, causal: boolean, left: W, right: W, h0?: number, h1?: number): void;
  attnDelta(delta: F32, dOut: F32, out: F32, rows: number, D: number): void;
  attnMerge(out: F32, lse: F32, out2: F32, lse2: F32, rows: number, D: number): void;
  /** Forces a code path for this JS thread; throws if the CPU cannot run it. */
  setIsa(isa: Isa): boolean;
  isa(): Isa;
  supportedIsas(): Isa[];
  /** Intra-op threads for matmul/attention on this JS thread (default 1). */
  setThreads(n: number): void;
  threads(): number;
  pinCurrentThread(core: number): boolean;
  /** Runs the current ISA's FMA-throughput loop; returns the FLOPs executed. */
  fmaPeak(iters: number): number;
  releaseScratch(): void;
  /** CPU seconds of this JS thread plus its intra-op pool threads (benchmarks). */
  cpuSeconds(): number;
}

/** Repository root: the nearest ancestor of this module holding binding.gyp (works from dist/ and src/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return process.cwd();
}

let cached: { addon: NativeAddon } | { error: string } | undefined;

/** Loads the addon once per JS thread (worker threads load their own instance). */
export function loadAddon(): { addon: NativeAddon } | { error: string } {
  if (cached) return cached;
  const root = packageRoot();
  const file = join(root, 'build', 'Release', 'seqpar_native.node');
  if (!existsSync(file)) {
    const errFile = join(root, 'build', 'native-build-error.txt');
    const why = existsSync(errFile) ? readFileSync(errFile, 'utf8').trim().split('\n')[0] : 'run `npm run install` to build it';
    cached = { error: `native addon not built (${why})` };
    return cached;
  }
  try {
    const require = createRequire(import.meta.url);
    cached = { addon: require(file) as NativeAddon };
  } catch (e) {
    const msg = String((e as Error)?.message ?? e).split('\n')[0];
    cached = { error: `native addon failed to load: ${msg}` };
  }
  return cached;
}
