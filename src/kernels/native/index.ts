/**
 * The native backend: the Kernels interface on the C++ SIMD addon (native/, AVX-512 / AVX2+FMA /
 * scalar chosen at run time). Float32 arguments run natively, in place; anything involving a
 * Float64Array is delegated to the js backend (float64 is the oracle and stays on js).
 */
import type { Buf } from '../../tensor/dtype.js';
import type { Kernels } from '../types.js';
import { jsKernels } from '../js/index.js';
import { loadAddon, type Isa, type NativeAddon } from './addon.js';
import { setLargeBufferAllocator } from '../../tensor/dtype.js';

export type { Isa, NativeAddon } from './addon.js';

const f32 = (b: Buf | null | undefined): b is Float32Array => b instanceof Float32Array;
/** True when every present buffer is float32 (absent optional ones do not count). */
function all32(...bs: (Buf | null | undefined)[]): boolean {
  for (const b of bs) if (b != null && !f32(b)) return false;
  return true;
}

function makeKernels(a: NativeAddon): Kernels {
  const js = jsKernels;
  return {
    name: 'native',
    matmulForward(o, i, d) {
      if (!all32(o.out, i.x, i.weight, i.bias)) return js.matmulForward(o, i, d);
      a.matmulForward(o.out as Float32Array, i.x as Float32Array, i.weight as Float32Array, (i.bias ?? null) as Float32Array | null, d.N, d.K, d.M);
    },
    matmulBackward(g, i, d) {
      if (!all32(g.dx, g.dWeight, g.dBias, i.dOut, i.x, i.weight)) return js.matmulBackward(g, i, d);
      a.matmulBackward((g.dx ?? null) as Float32Array | null, (g.dWeight ?? null) as Float32Array | null, (g.dBias ?? null) as Float32Array | null,
        i.dOut as Float32Array, i.x as Float32Array, i.weight as Float32Array, d.N, d.K, d.M, !!d.overwrite);
    },
    layerNormForward(o, i, d) {
      if (!all32(o.out, o.mean, o.rstd, i.x, i.weight, i.bias)) return js.layerNormForward(o, i, d);
      a.layerNormForward(o.out as Float32Array, o.mean as Float32Array, o.rstd as Float32Array, i.x as Float32Array, i.weight as Float32Array, i.bias as Float32Array, d.N, d.C, d.eps);
    },
    layerNormBackward(g, i, d) {
      if (!all32(g.dx, g.dWeight, g.dBias, i.dOut, i.x, i.weight, i.mean, i.rstd)) return js.layerNormBackward(g, i, d);
      a.layerNormBackward(g.dx as Float32Array, g.dWeight as Float32Array, g.dBias as Float32Array, i.dOut as Float32Array, i.x as Float32Array,
        i.weight as Float32Array, i.mean as Float32Array, i.rstd as Float32Array, d.N, d.C);
    },
    rmsNormForward(o, i, d) {
      if (!all32(o.out, o.rstd, i.x, i.weight)) return js.rmsNormForward(o, i, d);
      a.rmsNormForward(o.out as Float32Array, o.rstd as Float32Array, i.x as Float32Array, i.weight as Float32Array, d.N, d.C, d.eps);
    },
    rmsNormBackward(g, i, d) {
      if (!all32(g.dx, g.dWeight, i.dOut, i.x, i.weight, i.rstd)) return js.rmsNormBackward(g, i, d);
      a.rmsNormBackward(g.dx as Float32Array, g.dWeight as Float32Array, i.dOut as Float32Array, i.x as Float32Array, i.weight as Float32Array, i.rstd as Float32Array, d.N, d.C);
    },
    geluForward(o, i, d) {
      if (!all32(o.out, i.x)) return js.geluForward(o, i, d);
      a.geluForward(o.out as Float32Array, i.x as Float32Array, d.n);
    },
    geluBackward(g, i, d) {
      if (!all32(g.dx, i.dOut, i.x)) return js.geluBackward(g, i, d);
      a.geluBackward(g.dx as Float32Array, i.dOut as Float32Array, i.x as Float32Array, d.n, !!d.overwrite);
    },
    swigluForward(o, i, d) {
      if (!all32(o.out, i.x)) return js.swigluForward(o, i, d);
      a.swigluForward(o.out as Float32Array, i.x as Float32Array, d.N, d.F);
    },
    swigluBackward(g, i, d) {
      if (!all32(g.dx, i.dOut, i.x)) return js.swigluBackward(g, i, d);
      a.swigluBackward(g.dx as Float32Array, i.dOut as Float32Array, i.x as Float32Array, d.N, d.F, !!d.overwrite);
    },
    embeddingForward(o, i, d) {
      if (!all32(o.out, i.weight)) return js.embeddingForward(o, i, d);
      a.embeddingForward(o.out as Float32Array, i.tokens, i.weight as Float32Array, d.N, d.C);
    },
    embeddingBackward(g, i, d) {
      if (!all32(g.dWeight, i.dOut)) return js.embeddingBackward(g, i, d);
      a.embeddingBackward(g.dWeight as Float32Array, i.dOut as Float32Array, i.tokens, d.N, d.C);
    },
    ropeForward(o, i, d) {
      if (!all32(o.out, i.x) || !(d.base > 0)) return js.ropeForward(o, i, d);
      a.rope(o.out as Float32Array, i.x as Float32Array, i.pos, d.B, d.T, d.H, d.D, d.base, false);
    },
    ropeBackward(g, i, d) {
      if (!all32(g.dx, i.dOut) || !(d.base > 0)) return js.ropeBackward(g, i, d);
      a.rope(g.dx as Float32Array, i.dOut as Float32Array, i.pos, d.B, d.T, d.H, d.D, d.base, true, !!d.overwrite);
    },
    crossEntropyForward(o, i, d) {
      if (!all32(o.losses, o.lse, i.logits)) return js.crossEntropyForward(o, i, d);
      return a.crossEntropyForward(o.losses as Float32Array, o.lse as Float32Array, i.logits as Float32Array, i.targets, d.N, d.V, d.ignoreIndex);
    },
    crossEntropyBackward(g, i, d) {
      if (!all32(g.dLogits, i.logits, i.lse)) return js.crossEntropyBackward(g, i, d);
      a.crossEntropyBackward(g.dLogits as Float32Array, i.logits as Float32Array, i.lse as Float32Array, i.targets, d.N, d.V, d.ignoreIndex, d.scale);
    },
    adamwStep(o, i, d) {
      if (!all32(o.param, o.m, o.v, i.grad)) return js.adamwStep(o, i, d);
      if (!Number.isInteger(d.step) || d.step < 1) throw new RangeError(`adamw: step is 1-based, got ${d.step}`);
      a.adamwStep(o.param as Float32Array, o.m as Float32Array, o.v as Float32Array, i.grad as Float32Array, d.n, d.lr, d.beta1, d.beta2, d.eps, d.weightDecay, d.step);
    },
    sumSquares(x) {
      return f32(x) ? a.sumSquares(x) : js.sumSquares(x);
    },
    scale(x, s) {
      if (f32(x)) a.scale(x, s);
      else js.scale(x, s);
    },
    axpy(y, x, s) {
      if (all32(y, x)) a.axpy(y as Float32Array, x as Float32Array, s);
      else js.axpy(y, x, s);
    },
    attnForward(o, i, d) {
      if (!all32(o.out, o.lse, i.q, i.k, i.v)) return js.attnForward(o, i, d);
      a.attnForward(o.out as Float32Array, o.lse as Float32Array, i.q as Float32Array, i.k as Float32Array, i.v as Float32Array, i.qPos, i.kPos,
        d.B, d.Tq, d.Tk, d.H, d.G, d.D, d.scale, d.mask.causal, d.mask.windowLeft, d.mask.windowRight, d.heads?.from, d.heads?.to);
    },
    attnBackward(g, i, d) {
      if (!all32(g.dq, g.dk, g.dv, i.dOut, i.q, i.k, i.v, i.out, i.lse, i.delta)) return js.attnBackward(g, i, d);
      a.attnBackward(g.dq as Float32Array, g.dk as Float32Array, g.dv as Float32Array, i.dOut as Float32Array, i.q as Float32Array,
        i.k as Float32Array, i.v as Float32Array, i.out as Float32Array, i.lse as Float32Array, i.delta as Float32Array, i.qPos, i.kPos,
        d.B, d.Tq, d.Tk, d.H, d.G, d.D, d.scale, d.mask.causal, d.mask.windowLeft, d.mask.windowRight, d.heads?.from, d.heads?.to);
    },
    attnDelta(o, i, d) {
      if (!all32(o.delta, i.dOut, i.out)) return js.attnDelta(o, i, d);
      a.attnDelta(o.delta as Float32Array, i.dOut as Float32Array, i.out as Float32Array, d.B * d.T * d.H, d.D);
    },
    attnMerge(o, i, d) {
      if (!all32(o.out, o.lse, i.out2, i.lse2)) return js.attnMerge(o, i, d);
      a.attnMerge(o.out as Float32Array, o.lse as Float32Array, i.out2 as Float32Array, i.lse2 as Float32Array, d.B * d.T * d.H, d.D);
    },
  };
}

let kernels: Kernels | undefined;

/** The native Kernels, or one line saying why they are unavailable (not built, or failed to load). */
export function loadNativeKernels(): { kernels: Kernels } | { error: string } {
  const r = loadAddon();
  if ('error' in r) return r;
  kernels ??= makeKernels(r.addon);
  // Large buffers allocated from now on (model arena, scheme scratch) go on huge pages.
  const huge = r.addon.allocHuge;
  if (huge) setLargeBufferAllocator((bytes) => huge(bytes));
  return { kernels };
}

/** Intra-op threads for native matmul/attention on the calling JS thread (default 1: ranks give the parallelism). */
export function setNativeThreads(n: number): void {
  const r = loadAddon();
  if ('addon' in r) r.addon.setThreads(Math.max(1, Math.floor(n)));
}

/** Pins the calling OS thread to one core (sched_setaffinity). False when unavailable or refused. */
export function pinCurrentThread(core: number): boolean {
  const r = loadAddon();
  return 'addon' in r ? r.addon.pinCurrentThread(core) : false;
}

/** The ISA the native kernels use on this thread, or null without the addon. */
export function nativeIsa(): Isa | null {
  const r = loadAddon();
  return 'addon' in r ? r.addon.isa() : null;
}

/** ISAs this CPU can run (test sweep); empty without the addon. */
export function supportedIsas(): Isa[] {
  const r = loadAddon();
  return 'addon' in r ? r.addon.supportedIsas() : [];
}

/** Forces a code path on this thread (tests, benchmarks); throws if the CPU cannot run it. */
export function setNativeIsa(isa: Isa): void {
  const r = loadAddon();
  if ('error' in r) throw new Error(r.error);
  r.addon.setIsa(isa);
}

/**
 * dst.set(src) through libc's memmove (equal byte lengths), or null without the addon. V8 copies
 * SharedArrayBuffer memory word by word; this is 10–25% faster on MB-sized shared copies, which is
 * what the threads transport moves (comm's setBulkCopy takes it).
 */
export function nativeBulkCopy(): ((dst: ArrayBufferView, src: ArrayBufferView) => void) | null {
  const r = loadAddon();
  if (!('addon' in r) || !r.addon.copyBytes) return null;
  const copy = r.addon.copyBytes;
  return (dst, src) => copy(dst, src);
}

/** dst[i] += src[i] for float32 or float64 arrays (comm's setBulkAdd takes it), or null. */
export function nativeBulkAdd(): ((dst: Float32Array | Float64Array, src: Float32Array | Float64Array) => void) | null {
  const r = loadAddon();
  if (!('addon' in r) || !r.addon.addInto) return null;
  const add = r.addon.addInto;
  return (dst, src) => add(dst, src);
}

/** Structurally comm's RawAccess (kernels/ may not import comm/). */
export interface RawAccess {
  addressOf(ta: ArrayBufferView): number;
  read(dst: ArrayBufferView, addr: number, add: boolean, ctl: Int32Array, readingIdx: number, closedIdx: number, seq: number, abortIdx: number): boolean;
  readRows?(dst: ArrayBufferView, dRows: Int32Array | null, addr: number, sRows: Int32Array | null, n: number, row: number, add: boolean, ctl: Int32Array, readingIdx: number, closedIdx: number, seq: number, abortIdx: number): boolean;
}

/**
 * Asks for transparent huge pages over the whole reservation of the SharedArrayBuffer behind
 * `view` (a growable one reserves its maximum length up front): pages it faults in from then on
 * come 2 MiB at a time, as the arena's own buffers do (allocHuge). False without the addon.
 */
export function adviseHugeShared(view: ArrayBufferView): boolean {
  const r = loadAddon();
  if (!('addon' in r) || !r.addon.adviseHugeRange || !(view.buffer instanceof SharedArrayBuffer)) return false;
  // growable/maxByteLength are ES2024 (Node 20 has them; the lib setting here is older)
  const sab = view.buffer as SharedArrayBuffer & { growable?: boolean; maxByteLength?: number };
  return r.addon.adviseHugeRange(new Uint8Array(sab, 0, 1), sab.growable ? sab.maxByteLength! : sab.byteLength);
}

/** Address-based peer reads for the threads transport's one-copy path (comm's setRawAccess takes them), or null. */
export function nativeRawAccess(): RawAccess | null {
  const r = loadAddon();
  if (!('addon' in r) || !r.addon.addressOf || !r.addon.rawRead) return null;
  const { addressOf, rawRead, rawReadRows } = r.addon;
  const access: RawAccess = { addressOf: (ta) => addressOf(ta), read: (dst, addr, add, ctl, ri, ci, seq, ai) => rawRead(dst, addr, add, ctl, ri, ci, seq, ai) };
  if (rawReadRows) access.readRows = (dst, dr, addr, sr, n, row, add, ctl, ri, ci, seq, ai) => rawReadRows(dst, dr, addr, sr, n, row, add, ctl, ri, ci, seq, ai);
  return access;
}

/** Row copies for allToAllRows (comm's setRowCopy takes it), or null without the addon. */
export function nativeRowCopy(): ((dst: ArrayBufferView, dRows: Int32Array | null, src: ArrayBufferView, sRows: Int32Array | null, n: number, row: number, add: boolean) => void) | null {
  const r = loadAddon();
  if (!('addon' in r) || !r.addon.copyRows) return null;
  const copy = r.addon.copyRows;
  return (dst, dr, src, sr, n, row, add) => copy(dst, dr, src, sr, n, row, add);
}

/** The raw addon (benchmarks: FMA peak loop), or null. */
export function nativeAddon(): NativeAddon | null {
  const r = loadAddon();
  return 'addon' in r ? r.addon : null;
}
