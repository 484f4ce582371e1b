/**
 * Communication contracts. Communication code knows nothing about heads or sequences: it moves
 * flat buffers. Every call is logged in the group's CommLog; ranks that disagree on a call (op,
 * axis or byte size at the same sequence number) get an error naming both, never a hang.
 */
import type { Buf } from '../tensor/dtype.js';

export type ReduceOp = 'sum' | 'avg' | 'max';
export type AxisName = 'world' | 'dp' | 'sp' | 'tp' | 'ulysses' | 'ring' | (string & {});
export type CommBuf = Buf | Int32Array;
export type CommDtype = 'float32' | 'float64' | 'int32';
export interface CommArrays {
  float32: Float32Array;
  float64: Float64Array;
  int32: Int32Array;
}

export interface CommRecord {
  op: 'allReduce' | 'allGather' | 'reduceScatter' | 'allToAll' | 'broadcast' | 'sendRecv' | 'barrier';
  axis: AxisName;
  /** Bytes this rank SENDS for the call (algorithms.md §0.1 conventions: ring/bandwidth-optimal). */
  bytes: number;
  /** Per-group call counter, identical on every rank of the group for the same call. */
  seq: number;
  /** Seconds from start to completion on this rank. */
  sec: number;
}

export interface CommLog {
  readonly records: readonly CommRecord[];
  totalBytes(filter?: { op?: CommRecord['op']; axis?: AxisName }): number;
  clear(): void;
}

/**
 * Which rows an allToAllRows moves (the same map on every rank of the group). Both buffers are
 * seen as rows of `row` elements; row index i covers elements [i·row, (i + 1)·row).
 */
export interface RowMap {
  /** Elements per row. */
  row: number;
  /** Rows per chunk (R). */
  rows: number;
  /** [size·R]: the chunk for group rank j is input rows send[j·R .. (j + 1)·R); null: rows j·R .. (j + 1)·R. */
  send: Int32Array | null;
  /** [size·R]: the r-th row from group rank i lands in out row recv[i·R + r]; null: row i·R + r. */
  recv: Int32Array | null;
}

/** A group of ranks along one mesh axis (or the whole world). `rank` and `size` are group-local. */
export interface ProcessGroup {
  readonly axis: AxisName;
  readonly rank: number;
  readonly size: number;
  /** Global ranks of the members, in group order. */
  readonly ranks: readonly number[];
  readonly log: CommLog;

  /** In place: buf = reduce over ranks. */
  allReduce(buf: CommBuf, op?: ReduceOp): Promise<void>;
  /** out [size·n] = concat over group ranks of input [n] (rank order). */
  allGather(out: CommBuf, input: CommBuf): Promise<void>;
  /** input [size·n]: out [n] = reduce over ranks of their input chunk number `rank`. */
  reduceScatter(out: CommBuf, input: CommBuf, op?: ReduceOp): Promise<void>;
  /** input [size·n] in `size` equal chunks; chunk j goes to rank j; out chunk i came from rank i. */
  allToAll(out: CommBuf, input: CommBuf): Promise<void>;
  /**
   * allToAll of rows picked by `map` (heads out of a [tokens, heads, D] tensor, say): chunk j is
   * input's rows map.send[j·R ..], and the rows from rank i go to out's rows map.recv[i·R ..],
   * overwritten or (add) summed over sources in rank order. Moves and logs what an allToAll of
   * size·R·row elements does, without packing the chunks first: the threads transport reads the
   * peers' rows where they are (one copy per byte). input and out must not overlap.
   */
  allToAllRows(out: CommBuf, input: CommBuf, map: RowMap, add?: boolean): Promise<void>;
  /** buf on every rank = buf of group rank `root`. */
  broadcast(buf: CommBuf, root: number): Promise<void>;
  /**
   * Paired exchange: sends `send` to group rank `dst` and receives into `recv` from group rank
   * `src`. Start it before computing and await it afterwards to overlap (rings).
   */
  sendRecv(send: CommBuf, dst: number, recv: CommBuf, src: number): Promise<void>;
  barrier(): Promise<void>;

  /**
   * n zeroed elements of memory this transport can send from without staging it (threads: this
   * rank's shared arena, which peers read directly; inproc: ordinary memory). A call whose send
   * buffer (input, buf or send) is such memory moves each byte once instead of twice, and resolves
   * only after every peer that reads it has finished, so the caller may overwrite it as soon as the
   * call settles. Shared by all groups of the rank; give it back with releaseBuffer.
   */
  allocBuffer<T extends CommDtype>(dtype: T, n: number): CommArrays[T];
  /** Returns a buffer from allocBuffer (a no-op for ordinary memory). */
  releaseBuffer(b: CommBuf): void;

  /**
   * Optional, on transports whose ranks share an address space (threads: buffers from allocBuffer;
   * inproc: any buffer): collective, every member passes one buffer of its own (one dtype on all),
   * and gets every member's, index = group rank (its own is `buf`), as views it may read and write
   * in place. Ordering is the caller's: a barrier between one rank's writes and another's reads.
   * Ulysses' zero-copy path runs the attention kernels of each rank on all members' tensors.
   */
  peerBuffers?(buf: CommBuf): Promise<CommBuf[]>;
  /** Whether peerBuffers would take `buf` (present exactly where peerBuffers is). */
  sharesBuffer?(buf: CommBuf): boolean;
}

/** One rank's handle on the world: its rank, and groups built over subsets of ranks. */
export interface World {
  readonly rank: number;
  readonly size: number;
  readonly transport: 'inproc' | 'threads' | 'mpi';
  /** The group of all ranks. */
  readonly group: ProcessGroup;
  /** Collective over the world: every rank must call it with the same `ranksList` in the same order. */
  newGroup(ranks: readonly number[], axis: AxisName): ProcessGroup;
}
