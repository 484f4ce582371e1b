/**
 * CommLog implementation and the byte-accounting conventions (algorithms.md §0.1: bytes SENT by
 * one rank under the standard bandwidth-optimal algorithms). Both transports log through
 * `sentBytes`, so cost-formula tests see the same numbers whatever moved the data.
 */
import type { AxisName, CommLog, CommRecord } from './types.js';

/**
 * Bytes one rank sends for a call, by convention (P = group size, `bytes` = the byte size of the
 * call's main buffer: buf for allReduce/broadcast, input for allGather/reduceScatter/allToAll,
 * send for sendRecv):
 * - allReduce:     2·bytes·(P−1)/P          (reduce-scatter + all-gather)
 * - allGather:     bytes·(P−1)              (= output bytes·(P−1)/P)
 * - reduceScatter: bytes·(P−1)/P            (input bytes)
 * - allToAll:      bytes·(P−1)/P            (input bytes; the own chunk stays)
 * - broadcast:     root: bytes·(P−1), others 0 (flat broadcast: the total over ranks, bytes·(P−1),
 *                  is what any broadcast algorithm must move; attributed to the root)
 * - sendRecv:      bytes, or 0 when dst is this rank or none (−1)
 * - barrier:       0
 * Results may be fractional (e.g. allReduce of 4 B over 3 ranks); computed in exactly this order.
 */
export function sentBytes(op: CommRecord['op'], bytes: number, P: number, rank: number, peer: number): number {
  switch (op) {
    case 'allReduce':
      return (2 * bytes * (P - 1)) / P;
    case 'allGather':
      return bytes * (P - 1);
    case 'reduceScatter':
    case 'allToAll':
      return (bytes * (P - 1)) / P;
    case 'broadcast':
      return rank === peer ? bytes * (P - 1) : 0;
    case 'sendRecv':
      return peer < 0 || peer === rank ? 0 : bytes;
    case 'barrier':
      return 0;
  }
}

/** Append-only list of records, one per completed call of one group on one rank. */
export class MemoryCommLog implements CommLog {
  private readonly list: CommRecord[] = [];

  get records(): readonly CommRecord[] {
    return this.list;
  }

  push(r: CommRecord): void {
    this.list.push(r);
  }

  totalBytes(filter: { op?: CommRecord['op']; axis?: AxisName } = {}): number {
    let s = 0;
    for (const r of this.list) {
      if (filter.op !== undefined && r.op !== filter.op) continue;
      if (filter.axis !== undefined && r.axis !== filter.axis) continue;
      s += r.bytes;
    }
    return s;
  }

  clear(): void {
    this.list.length = 0;
  }
}
