/**
 * Arena allocator with live and peak byte accounting per category. Every buffer the trainer and
 * the strategies hold goes through one, so `peakBytes` is measured, not estimated, and the planner's
 * size functions can be checked against it byte for byte.
 */
import { allocBuf, bytesPerElement, type Buf, type DType } from './dtype.js';

export type MemCategory = 'params' | 'grads' | 'optimizer' | 'activations' | 'scratch' | 'comm';
export const MEM_CATEGORIES: readonly MemCategory[] = ['params', 'grads', 'optimizer', 'activations', 'scratch', 'comm'];

export interface MemStats {
  liveBytes: number;
  peakBytes: number;
  byCategory: Record<MemCategory, { liveBytes: number; peakBytes: number }>;
}

export class Arena {
  private live = 0;
  private peak = 0;
  private cat = new Map<MemCategory, { liveBytes: number; peakBytes: number }>();
  private owner = new WeakMap<object, { cat: MemCategory; bytes: number }>();

  constructor(readonly dtype: DType) {
    for (const c of MEM_CATEGORIES) this.cat.set(c, { liveBytes: 0, peakBytes: 0 });
  }

  /** Zero-filled buffer of `n` elements in the arena's dtype, charged to `category`. */
  alloc(category: MemCategory, n: number, dtype: DType = this.dtype): Buf {
    const b = allocBuf(dtype, n);
    this.track(category, b, n * bytesPerElement(dtype));
    return b;
  }

  allocI32(category: MemCategory, n: number): Int32Array {
    const b = new Int32Array(n);
    this.track(category, b, n * 4);
    return b;
  }

  /** Charge an externally created buffer (for example a SharedArrayBuffer view). */
  track(category: MemCategory, b: object & { byteLength: number }, bytes = b.byteLength): void {
    if (this.owner.has(b)) throw new Error('arena: buffer already tracked');
    this.owner.set(b, { cat: category, bytes });
    this.live += bytes;
    if (this.live > this.peak) this.peak = this.live;
    const c = this.cat.get(category)!;
    c.liveBytes += bytes;
    if (c.liveBytes > c.peakBytes) c.peakBytes = c.liveBytes;
  }

  free(b: object): void {
    const o = this.owner.get(b);
    if (!o) throw new Error('arena: freeing a buffer it does not own');
    this.owner.delete(b);
    this.live -= o.bytes;
    this.cat.get(o.cat)!.liveBytes -= o.bytes;
  }

  stats(): MemStats {
    const byCategory = {} as MemStats['byCategory'];
    for (const [k, v] of this.cat) byCategory[k] = { ...v };
    return { liveBytes: this.live, peakBytes: this.peak, byCategory };
  }

  /** Restart peak tracking from the current live bytes (e.g. per training step). */
  resetPeak(): void {
    this.peak = this.live;
    for (const v of this.cat.values()) v.peakBytes = v.liveBytes;
  }
}
