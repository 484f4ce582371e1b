/**
 * Shared-memory layout of the threads transport.
 *
 * Control SAB (one per run): an Int32 part for everything that is waited on or published with
 * Atomics, and a Float64 part for byte counts and offsets (may exceed 2^31). Per group g:
 *   bell   — bumped + notified on every state change of the group; waiters re-check and sleep on it
 *   hash   — newGroup check: the first rank stores a hash of (axis, ranks), the others compare
 *   per member m: PUB (last seq whose descriptor + data are published), RED (allReduce: reduced
 *   slice of seq ready), DONE (finished reading seq), OP, DTYPE, REDOP, ROOT, DST, SRC;
 *   RAW (1: OFF is the address of the caller's own ordinary buffer, read with the addon's rawRead;
 *   0: an offset in the member's arena), CLOSED (last seq whose raw buffer is no longer offered),
 *   READING (how many peers are inside a raw read of that buffer right now); ROWS (allToAllRows:
 *   1 = OFF is the input itself, read row by row through the map; 0 = chunks staged contiguously);
 *   f64: BYTES, RECV (sendRecv: bytes expected; allToAllRows: byte length of the input offered),
 *   OFF (data offset in the member's arena, or address), OFF2 (reduced slice, always in the arena).
 * Seqs are stored 1-based (0 = nothing yet). Header: FAILED = 1 + the first rank whose fn threw
 * (0 = none); RAWSTOP = 1 once the launcher withdraws every raw buffer (before it terminates
 * workers); EXIT[r] = 1 once rank r's fn returned.
 *
 * Data: one growable SAB ("arena") per rank, written only by its owner, read by everyone. Each
 * group gets a staging region of it, re-allocated when a call needs more; the rank's code may also
 * allocate its own buffers there (allocBuffer), which peers then read without a staging copy.
 */
import { growableSab, growSab } from './compat.js';

export const MAX_GROUPS = 512;
export const ARENA_MAX_BYTES = 2 ** 32; // V8's limit for a growable SharedArrayBuffer
const ARENA_INITIAL_BYTES = 1 << 20;
const ALIGN = 64;

export const F = { PUB: 0, RED: 1, DONE: 2, OP: 3, DTYPE: 4, REDOP: 5, ROOT: 6, DST: 7, SRC: 8, RAW: 9, CLOSED: 10, READING: 11, ROWS: 12 } as const;
export const FF = { BYTES: 0, RECV: 1, OFF: 2, OFF2: 3 } as const;
const MEMBER_INTS = 13;
const MEMBER_F64 = 4;
const GROUP_HEAD = 4;

export class Layout {
  readonly headerInts: number;
  readonly groupInts: number;
  readonly intCount: number;
  readonly bytes: number;

  constructor(readonly size: number) {
    this.headerInts = 16 + size;
    this.groupInts = GROUP_HEAD + size * MEMBER_INTS;
    this.intCount = this.headerInts + MAX_GROUPS * this.groupInts;
    const f64Start = Math.ceil((this.intCount * 4) / 8) * 8;
    this.bytes = f64Start + MAX_GROUPS * size * MEMBER_F64 * 8;
  }

  readonly failed = 0;
  readonly rawStop = 1;
  exit(rank: number): number {
    return 16 + rank;
  }
  bell(g: number): number {
    return this.headerInts + g * this.groupInts;
  }
  hash(g: number): number {
    return this.bell(g) + 1;
  }
  /** Int32 index of field f of member m of group g. */
  i(g: number, m: number, f: number): number {
    return this.bell(g) + GROUP_HEAD + m * MEMBER_INTS + f;
  }
  /** Float64 index (within the f64 view) of field f of member m of group g. */
  f(g: number, m: number, f: number): number {
    return (g * this.size + m) * MEMBER_F64 + f;
  }

  views(ctl: SharedArrayBuffer): { i32: Int32Array; f64: Float64Array } {
    const f64Start = Math.ceil((this.intCount * 4) / 8) * 8;
    return { i32: new Int32Array(ctl, 0, this.intCount), f64: new Float64Array(ctl, f64Start, MAX_GROUPS * this.size * MEMBER_F64) };
  }
}

/** Typed view of `bytes` bytes at `off` of an arena, by the descriptors' dtype code (core.ts DTYPES). */
export type View = Float32Array | Float64Array | Int32Array;
export const BPE = [0, 4, 8, 4];
export function view(sab: SharedArrayBuffer, dtype: number, off: number, bytes: number): View {
  const n = bytes / BPE[dtype]!;
  if (dtype === 1) return new Float32Array(sab, off, n);
  if (dtype === 2) return new Float64Array(sab, off, n);
  return new Int32Array(sab, off, n);
}

export function newArena(): SharedArrayBuffer {
  return growableSab(ARENA_INITIAL_BYTES, ARENA_MAX_BYTES);
}

export function align(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN;
}

/**
 * Owner-side allocator over one rank's arena: first-fit over a free list (adjacent free blocks
 * coalesce), bump-allocating (and growing the SAB) at the end. Two kinds of users: each group's
 * staging region (re-allocated when a call needs more), and buffers handed to the rank's code
 * (`ProcessGroup.allocBuffer`), which peers can then read directly — the zero-copy path.
 */
export class ArenaAlloc {
  private used = 0;
  /** Free blocks below `used`, sorted by offset. */
  private readonly free: { off: number; size: number }[] = [];
  private readonly sizes = new Map<number, number>();
  private readonly regions = new Map<number, { off: number; cap: number }>();

  constructor(readonly sab: SharedArrayBuffer) {}

  /** Bytes currently handed out (regions and buffers). */
  get liveBytes(): number {
    let n = 0;
    for (const s of this.sizes.values()) n += s;
    return n;
  }

  /** Offset of `bytes` (rounded up to 64) of arena memory, contents undefined. */
  alloc(bytes: number): number {
    const size = align(Math.max(bytes, 1));
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i]!;
      if (f.size < size) continue;
      const off = f.off;
      if (f.size === size) this.free.splice(i, 1);
      else this.free[i] = { off: off + size, size: f.size - size };
      this.sizes.set(off, size);
      return off;
    }
    const off = this.used;
    const end = off + size;
    if (end > ARENA_MAX_BYTES) throw new RangeError(`threads transport: a rank's shared arena would exceed ${ARENA_MAX_BYTES} bytes (needs ${end})`);
    if (end > this.sab.byteLength) growSab(this.sab, Math.min(ARENA_MAX_BYTES, Math.max(end, Math.min(2 * this.sab.byteLength, end + (64 << 20)))));
    this.used = end;
    this.sizes.set(off, size);
    return off;
  }

  /** Returns a block from `alloc` to the free list. */
  release(off: number): void {
    const size = this.sizes.get(off);
    if (size === undefined) throw new Error(`threads transport: arena offset ${off} is not an allocated block`);
    this.sizes.delete(off);
    let i = 0;
    while (i < this.free.length && this.free[i]!.off < off) i++;
    this.free.splice(i, 0, { off, size });
    // Coalesce with the next, then the previous block; a free tail goes back to the bump pointer.
    const cur = this.free[i]!;
    const next = this.free[i + 1];
    if (next && cur.off + cur.size === next.off) {
      cur.size += next.size;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.off + prev.size === cur.off) {
      prev.size += cur.size;
      this.free.splice(i, 1);
    }
    const last = this.free[this.free.length - 1];
    if (last && last.off + last.size === this.used) {
      this.used = last.off;
      this.free.pop();
    }
  }

  /** Offset of a staging region of at least `need` bytes for group g (contents not preserved on growth). */
  region(g: number, need: number): number {
    const r = this.regions.get(g);
    if (r && r.cap >= need) return r.off;
    // Grow by at least 1.5× so a slowly growing message size does not re-allocate on every call.
    const cap = align(Math.max(need, r ? Math.floor(r.cap * 1.5) : 0, ALIGN));
    if (r) this.release(r.off);
    const off = this.alloc(cap);
    this.regions.set(g, { off, cap });
    return off;
  }
}

/** FNV-1a of a string, never 0 (0 marks an unused group slot). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 1;
}

/**
 * Launcher side, before terminating workers: withdraw every raw buffer (RAWSTOP) and wait, up to
 * `ms`, until no rank is inside a raw read of another's memory (a terminated worker's memory is
 * freed; a peer still copying from it would crash the process). Reads are single memcpys, so
 * this takes microseconds; true if every count reached 0.
 */
export function withdrawRawBuffers(ctl: SharedArrayBuffer, size: number, ms = 2000): boolean {
  const layout = new Layout(size);
  const { i32 } = layout.views(ctl);
  Atomics.store(i32, layout.rawStop, 1);
  const end = performance.now() + ms;
  for (;;) {
    let busy = 0;
    for (let g = 0; g < MAX_GROUPS; g++) for (let m = 0; m < size; m++) busy += Atomics.load(i32, layout.i(g, m, F.READING));
    if (busy === 0) return true;
    if (performance.now() > end) return false;
  }
}
