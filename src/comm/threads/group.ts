/**
 * Worker side of the threads transport: a ProcessGroup whose calls go through shared memory.
 * Each rank offers its contribution (in place, by address, or staged into its arena region:
 * placement.ts), publishes a descriptor with Atomics, and reads its peers' data directly into its
 * outputs. Calls on one group run in
 * order (a rank's region is reused by the next call only after every member finished reading).
 * Waiting never blocks the event loop: Atomics.waitAsync on the group's bell.
 */
import type { AxisName, CommArrays, CommBuf, CommDtype, ReduceOp } from '../types.js';
import { CommAbortError, CommError } from '../errors.js';
import { checkPairs, COMM_BPE, finishAvg, GroupBase, mismatchMessage, newCommArray, sameCall, sliceStart, type Call } from '../core.js';
import { waitAsync } from './compat.js';
import { AdaptiveSpin } from './spin.js';
import { bulkAccumulate, bulkCopy, bulkCopyRows, rawAccess } from './copy.js';
import { rowExtent } from '../rows.js';
import { inPlaceGather, inPlaceScatter, rawReadable, readableInPlace, stageInput } from './placement.js';
import { mapPeers } from './peers.js';
import { readCall, writeCall } from './descriptor.js';
import { align, ArenaAlloc, BPE, F, FF, Layout, view, type View } from './shm.js';

/** What every group of one rank in one run shares. */
export interface ThreadsCtx {
  rank: number;
  size: number;
  layout: Layout;
  i32: Int32Array;
  f64: Float64Array;
  /**
   * Every rank's arena (index = world rank). The transport writes only its own rank's; a peer may
   * write the buffers its owner handed out through peerBuffers, never the comm regions.
   */
  arenas: readonly SharedArrayBuffer[];
  alloc: ArenaAlloc;
  timeoutMs: number;
  /** How long waits poll before sleeping (spinMs). */
  spinMs: number;
}

export class ThreadsGroup extends GroupBase {
  private tail: Promise<unknown> = Promise.resolve();
  /** The call being run (calls on a group are serialised), for the errors `until` raises. */
  private cur: { op: Call['op']; seq: number } = { op: 'barrier', seq: -1 };
  private readonly spinner: AdaptiveSpin;
  protected override readonly movesRows = true;

  constructor(
    private readonly ctx: ThreadsCtx,
    private readonly gid: number,
    axis: AxisName,
    rank: number,
    ranks: readonly number[],
    worldRank: number,
  ) {
    super(axis, rank, ranks, worldRank);
    this.spinner = new AdaptiveSpin(ctx.spinMs);
  }

  override allocBuffer<T extends CommDtype>(dtype: T, n: number): CommArrays[T] {
    const bpe = COMM_BPE[dtype];
    if (bpe === undefined) return newCommArray(dtype, new ArrayBuffer(0), 0, n); // throws the dtype error
    const b = newCommArray(dtype, this.ctx.alloc.sab, this.ctx.alloc.alloc(Math.max(0, n) * bpe), n);
    b.fill(0);
    return b;
  }

  override releaseBuffer(b: CommBuf): void {
    if (b.buffer === this.ctx.alloc.sab) this.ctx.alloc.release(b.byteOffset);
  }

  /** Buffers from allocBuffer live in this rank's shared arena, which every rank can map. */
  sharesBuffer(b: CommBuf): boolean {
    return b.buffer === this.ctx.alloc.sab;
  }

  /** The members' allocBuffer buffers as views of their arenas (peers.ts). */
  peerBuffers(buf: CommBuf): Promise<CommBuf[]> {
    return mapPeers(this, this.ctx.arenas, this.ctx.alloc.sab, this.worldRank, buf);
  }

  protected execute(c: Call, seq: number): Promise<void> {
    const p = this.tail.then(() => this.run(c, seq + 1));
    this.tail = p.catch(() => undefined);
    return p;
  }

  private ring(): void {
    const b = this.ctx.layout.bell(this.gid);
    Atomics.add(this.ctx.i32, b, 1);
    Atomics.notify(this.ctx.i32, b);
  }

  private field(m: number, f: number): number {
    return Atomics.load(this.ctx.i32, this.ctx.layout.i(this.gid, m, f));
  }

  /** Sleeps on the bell until `ready` holds; `problem` may report an error early (mismatch, exit). */
  private async until(ready: () => boolean, problem: () => string | null, timeoutMsg: () => string): Promise<void> {
    const { i32, layout, timeoutMs } = this.ctx;
    const bell = layout.bell(this.gid);
    const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
    for (;;) {
      const b = Atomics.load(i32, bell);
      if (ready()) return;
      const failed = Atomics.load(i32, layout.failed);
      if (failed) {
        const { op, seq } = this.cur;
        throw new CommAbortError(`${op} #${seq} on axis ${this.axis} aborted: rank ${failed - 1} failed`, op, seq, this.axis);
      }
      const bad = problem();
      if (bad) throw new CommError(bad, this.cur.op, this.cur.seq, this.axis);
      const left = deadline - performance.now();
      if (left <= 0) throw new CommError(timeoutMsg(), this.cur.op, this.cur.seq, this.axis);
      if (this.spinner.spin(i32, bell, b)) continue;
      const w = waitAsync(i32, bell, b, Number.isFinite(left) ? left : undefined);
      if (w.async) await w.value;
    }
  }

  /** Descriptor published by member m (descriptor.ts). */
  private peerCall(m: number): Call {
    return readCall(this.ctx, this.gid, m);
  }

  private peerView(m: number, dtype: number, offField: number, byteOff: number, bytes: number): View {
    const off = this.ctx.f64[this.ctx.layout.f(this.gid, m, offField)]!;
    return view(this.ctx.arenas[this.ranks[m]!]!, dtype, off + byteOff, bytes);
  }

  private who(ks: number[]): string {
    return `rank${ks.length > 1 ? 's' : ''} ${ks.map((k) => this.ranks[k]).join(', ')}`;
  }

  private members(pred: (k: number) => boolean): number[] {
    const out: number[] = [];
    for (let k = 0; k < this.size; k++) if (pred(k)) out.push(k);
    return out;
  }

  private async run(c: Call, s: number): Promise<void> {
    const { ctx, gid, size: P, rank: m } = this;
    const { i32, f64, layout } = ctx;
    const seq = s - 1;
    this.cur = { op: c.op, seq };
    const at = `${c.op} #${seq} on axis ${this.axis}`;

    // 1. Our region may still be read for the previous call: wait until every member is done.
    await this.until(
      () => this.members((k) => this.field(k, F.DONE) < s - 1).length === 0,
      () => null,
      () => `${at} timed out after ${ctx.timeoutMs} ms waiting for ${this.who(this.members((k) => this.field(k, F.DONE) < s - 1))} to finish #${seq - 1}`,
    );

    // 2. Our contribution where peers can read it: in our arena already (zero-copy), in our own
    //    ordinary buffer by address (raw: one copy, the peer's), or staged into our arena region.
    const bpe = BPE[c.dtype]!;
    const n = c.bytes / (bpe || 1);
    // Our region past the staged input: allReduce's reduced slice (peers gather it), or the sum of
    // an in-place reduceScatter on rank ≥ 2 before it overwrites our chunk of the input (move).
    const redBytes = c.op === 'allReduce' ? (sliceStart(n, P, m + 1) - sliceStart(n, P, m)) * bpe : m >= 2 && inPlaceScatter(c, m) ? c.b!.byteLength : 0;
    const sends = c.a !== null && !(c.op === 'broadcast' && c.root !== m);
    const direct = sends && c.bytes > 0 && readableInPlace(c, this.ctx.alloc.sab, m);
    const raw = sends && !direct && c.bytes > 0 ? rawReadable(c, m) : null;
    const staged = sends && !direct && !raw;
    const need = (staged ? align(c.bytes) : 0) + redBytes;
    const region = need > 0 ? ctx.alloc.region(gid, need) : 0;
    const off = direct ? c.a!.byteOffset : raw ? raw.addressOf(c.a!) : region;
    if (staged && c.bytes > 0) stageInput(view(ctx.alloc.sab, c.dtype, off, c.bytes), c, m, P);

    // 3. Publish the descriptor; PUB is stored last (release) and loaded first (acquire) by peers.
    const fi = (f: number) => layout.i(gid, m, f);
    writeCall(ctx, gid, m, c);
    f64[layout.f(gid, m, FF.RECV)] = c.map ? c.a!.byteLength : c.src >= 0 && c.b ? c.b.byteLength : 0;
    f64[layout.f(gid, m, FF.OFF)] = off;
    f64[layout.f(gid, m, FF.OFF2)] = region + (staged ? align(c.bytes) : 0);
    i32[fi(F.RAW)] = raw ? 1 : 0;
    i32[fi(F.ROWS)] = c.map && !staged ? 1 : 0;
    Atomics.store(i32, fi(F.PUB), s);
    this.ring();
    if (!raw) return this.finish(c, s, n, at, direct);
    try {
      await this.finish(c, s, n, at, true);
    } finally {
      // Stop offering our buffer, then wait out any peer still inside a raw read of it (one
      // memcpy at most) before the caller may reuse or free it — on the error paths too.
      Atomics.store(i32, fi(F.CLOSED), s);
      while (Atomics.load(i32, fi(F.READING)) !== 0);
    }
  }

  /** Steps 4-6 of run(): everyone's descriptor, our reads, then (direct/raw) peers' reads of ours. */
  private async finish(c: Call, s: number, n: number, at: string, direct: boolean): Promise<void> {
    const { ctx, gid, size: P, rank: m } = this;
    const { i32, f64, layout } = ctx;
    const seq = s - 1;
    const exited = (k: number) => Atomics.load(i32, layout.exit(this.ranks[k]!)) === 1;
    const fi = (f: number) => layout.i(gid, m, f);

    // 4. Wait for everyone's descriptor; report a mismatch as soon as two arrived ones differ.
    const arrived = (k: number) => this.field(k, F.PUB) >= s;
    const mismatch = (): string | null => {
      const first = this.members(arrived)[0];
      if (first === undefined) return null;
      const c0 = this.peerCall(first);
      for (let k = first + 1; k < P; k++) {
        if (!arrived(k)) continue;
        const ck = this.peerCall(k);
        if (!sameCall(ck, c0)) return mismatchMessage(this.ranks[k]!, ck, this.ranks[first]!, c0, seq, this.axis);
      }
      const gone = this.members((k) => !arrived(k) && exited(k));
      return gone.length ? `${at}: ${this.who(gone)} returned without calling it` : null;
    };
    await this.until(
      () => this.members((k) => !arrived(k)).length === 0 && mismatch() === null,
      mismatch,
      () => {
        const missing = this.members((k) => !arrived(k));
        return `${at} timed out after ${ctx.timeoutMs} ms: ${this.who(missing)} ${missing.length > 1 ? 'have' : 'has'} not arrived (arrived: ${this.members(arrived).map((k) => this.ranks[k]).join(', ')})`;
      },
    );
    if (c.op === 'sendRecv') {
      const calls = this.members(() => true).map((k) => this.peerCall(k));
      const recv = calls.map((_, k) => f64[layout.f(gid, k, FF.RECV)]!);
      const bad = checkPairs(calls, recv, this.ranks, seq, this.axis);
      if (bad) throw new CommError(bad, c.op, seq, this.axis);
    }

    // 5. Read what we need straight from the peers' regions.
    await this.move(c, s, n, at);

    Atomics.store(i32, fi(F.DONE), s);
    this.ring();

    // 6. Peers read our buffer itself: the caller may overwrite it only once they all have.
    if (direct) {
      const readers = c.op === 'sendRecv' ? [c.dst] : this.members((k) => k !== m);
      const reading = () => readers.filter((k) => this.field(k, F.DONE) < s);
      await this.until(
        () => reading().length === 0,
        () => null,
        () => `${at} timed out after ${ctx.timeoutMs} ms waiting for ${this.who(reading())} to read this rank's buffer`,
      );
    }
  }

  /** dst = (op: null) or += member k's published data from byte `byteOff`: its arena region or its buffer by address. */
  private fromPeer(dst: View, k: number, byteOff: number, op: ReduceOp | null, s: number): void {
    const { ctx, gid } = this;
    if (this.field(k, F.RAW) === 1) {
      const r = rawAccess();
      if (!r) throw new CommError(`${this.cur.op} #${this.cur.seq} on axis ${this.axis}: rank ${this.ranks[k]} offers its buffer by address but this rank has no raw reads installed (setRawAccess on every rank, or on none)`, this.cur.op, this.cur.seq, this.axis);
      const addr = ctx.f64[ctx.layout.f(gid, k, FF.OFF)]! + byteOff;
      const ok = r.read(dst, addr, op !== null, ctx.i32, ctx.layout.i(gid, k, F.READING), ctx.layout.i(gid, k, F.CLOSED), s, ctx.layout.rawStop);
      if (!ok) {
        const { op: o, seq } = this.cur;
        throw new CommAbortError(`${o} #${seq} on axis ${this.axis} aborted: rank ${this.ranks[k]} withdrew its buffer before it was read`, o, seq, this.axis);
      }
      return;
    }
    const src = this.peerView(k, dst instanceof Float64Array ? 2 : dst instanceof Float32Array ? 1 : 3, FF.OFF, byteOff, dst.byteLength);
    if (op === null) bulkCopy(dst, src);
    else bulkAccumulate(dst, src, op);
  }

  private async move(c: Call, s: number, n: number, at: string): Promise<void> {
    const { size: P, rank: m } = this;
    const dt = c.dtype;
    const bpe = BPE[dt]!;
    switch (c.op) {
      case 'allGather': {
        const own = inPlaceGather(c, m);  // our chunk is already where it belongs
        for (let k = 0; k < P; k++) if (!(own && k === m)) this.fromPeer(c.b!.subarray(k * n, (k + 1) * n), k, 0, null, s);
        break;
      }
      case 'allToAll': {
        if (c.map) {
          this.moveRows(c, s);
          break;
        }
        const nc = n / P;
        if (c.b !== c.a) bulkCopy(c.b!.subarray(m * nc, (m + 1) * nc), c.a!.subarray(m * nc, (m + 1) * nc));
        for (let k = 0; k < P; k++) if (k !== m) this.fromPeer(c.b!.subarray(k * nc, (k + 1) * nc), k, m * nc * bpe, null, s);
        break;
      }
      case 'reduceScatter': {
        const nc = n / P;
        const inPlace = inPlaceScatter(c, m);
        if (inPlace && m <= 1) {
          // out already holds our own chunk; x0 + x1 == x1 + x0 exactly, so adding the other of
          // the first two and then the rest keeps the rank-order sum bit for bit
          for (let k = 0; k < P; k++) if (k !== m) this.fromPeer(c.b!, k, m * nc * bpe, c.redop, s);
          finishAvg(c.b!, c.redop, P);
          break;
        }
        // In place on a later rank (the sum reads our chunk after others): reduce in our region first.
        const out = inPlace ? view(this.ctx.alloc.sab, dt, this.ctx.f64[this.ctx.layout.f(this.gid, m, FF.OFF2)]!, nc * bpe) : c.b!;
        this.fromPeer(out, 0, m * nc * bpe, null, s);
        for (let k = 1; k < P; k++) this.fromPeer(out, k, m * nc * bpe, c.redop, s);
        finishAvg(out, c.redop, P);
        if (inPlace) bulkCopy(c.b!, out);
        break;
      }
      case 'allReduce':
        await this.allReduce2(c, s, n, at);
        break;
      case 'broadcast':
        if (m !== c.root && c.bytes > 0) this.fromPeer(c.a!, c.root, 0, null, s);
        break;
      case 'sendRecv':
        if (c.src >= 0 && c.b!.length > 0) this.fromPeer(c.b!, c.src, 0, null, s);
        break;
      case 'barrier':
        break;
    }
  }

  /**
   * allToAllRows: the rows of every source in rank order (repeated destination rows sum in that
   * order), ours from our input, the peers' from their input in place (ROWS = 1: through the map,
   * from their arena or by address) or from their staged contiguous chunks.
   */
  private moveRows(c: Call, s: number): void {
    const { ctx, gid, size: P, rank: m } = this;
    const { row, rows: R, send, recv } = c.map!;
    const add = c.add === true;
    const bpe = BPE[c.dtype]!;
    const out = c.b!;
    const chunk = (idx: Int32Array | null, k: number) => (idx ? idx.subarray(k * R, (k + 1) * R) : null);
    // Our chunk of a contiguous send side starts at row m·R; a mapped one indexes from row 0.
    const sRows = chunk(send, m);
    const sBase = send ? 0 : m * R * row;
    for (let k = 0; k < P; k++) {
      const dRows = chunk(recv, k);
      const dst = recv ? out : out.subarray(k * R * row, (k + 1) * R * row);
      if (k === m) {
        bulkCopyRows(dst, dRows, c.a!.subarray(sBase), sRows, R, row, add);
        continue;
      }
      if (this.field(k, F.ROWS) === 0) {
        bulkCopyRows(dst, dRows, this.peerView(k, c.dtype, FF.OFF, m * R * row * bpe, R * row * bpe), null, R, row, add);
        continue;
      }
      // The peer's input itself: never read past what it offers (its map may not match ours).
      const need = (sBase + rowExtent(sRows, 0, R) * row) * bpe;
      const has = ctx.f64[ctx.layout.f(gid, k, FF.RECV)]!;
      if (need > has) throw new CommError(`${this.cur.op} #${this.cur.seq} on axis ${this.axis}: the row map reads ${need} B of rank ${this.ranks[k]}'s input, which has ${has} B (every rank must pass the same map)`, this.cur.op, this.cur.seq, this.axis);
      if (this.field(k, F.RAW) === 1) {
        const r = rawAccess();
        if (!r?.readRows) throw new CommError(`${this.cur.op} #${this.cur.seq} on axis ${this.axis}: rank ${this.ranks[k]} offers its rows by address but this rank has no raw row reads installed (setRawAccess on every rank, or on none)`, this.cur.op, this.cur.seq, this.axis);
        const addr = ctx.f64[ctx.layout.f(gid, k, FF.OFF)]! + sBase * bpe;
        const ok = r.readRows(dst, dRows, addr, sRows, R, row, add, ctx.i32, ctx.layout.i(gid, k, F.READING), ctx.layout.i(gid, k, F.CLOSED), s, ctx.layout.rawStop);
        if (!ok) throw new CommAbortError(`${this.cur.op} #${this.cur.seq} on axis ${this.axis} aborted: rank ${this.ranks[k]} withdrew its buffer before it was read`, this.cur.op, this.cur.seq, this.axis);
        continue;
      }
      bulkCopyRows(dst, dRows, this.peerView(k, c.dtype, FF.OFF, sBase * bpe, need - sBase * bpe), sRows, R, row, add);
    }
  }

  /** Reduce our slice (ranks in order) into shared memory, then gather every rank's slice. */
  private async allReduce2(c: Call, s: number, n: number, at: string): Promise<void> {
    const { ctx, gid, size: P, rank: m } = this;
    const dt = c.dtype;
    const bpe = BPE[dt]!;
    const lo = sliceStart(n, P, m);
    const hi = sliceStart(n, P, m + 1);
    if (hi > lo) {
      const acc = view(ctx.alloc.sab, dt, ctx.f64[ctx.layout.f(gid, m, FF.OFF2)]!, (hi - lo) * bpe);
      this.fromPeer(acc, 0, lo * bpe, null, s);
      for (let k = 1; k < P; k++) this.fromPeer(acc, k, lo * bpe, c.redop, s);
      finishAvg(acc, c.redop, P);
    }
    Atomics.store(ctx.i32, ctx.layout.i(gid, m, F.RED), s);
    this.ring();
    const notReduced = () => this.members((k) => this.field(k, F.RED) < s);
    await this.until(
      () => notReduced().length === 0,
      () => null,
      () => `${at} timed out after ${ctx.timeoutMs} ms waiting for ${this.who(notReduced())} to reduce their slices`,
    );
    for (let k = 0; k < P; k++) {
      const klo = sliceStart(n, P, k);
      const khi = sliceStart(n, P, k + 1);
      if (khi > klo) bulkCopy(c.a!.subarray(klo, khi), this.peerView(k, dt, FF.OFF2, 0, (khi - klo) * bpe));
    }
  }
}

export type { CommBuf };
