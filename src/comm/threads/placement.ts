/**
 * Where a threads-transport call offers its send buffer to peers, so that they copy it once:
 * in place when it already lives in this rank's arena, by address (the addon's raw reads) when it
 * is ordinary memory, or (neither) staged into the arena by the caller. Either way peers read the
 * buffer while this rank waits, so nothing this rank writes during the call may overlap it.
 */
import type { Call } from '../core.js';
import type { CommBuf } from '../types.js';
import { bulkCopy, bulkCopyRows, rawAccessFor, type RawAccess } from './copy.js';

/**
 * Does the call leave `a` untouched while peers read it? allReduce rewrites its slices only after
 * every rank has reduced, and broadcast's root only reads; otherwise the output must not overlap it.
 */
function noRacingWrite(c: Call, rank: number): boolean {
  const a = c.a!;
  if (c.op === 'allReduce' || c.op === 'broadcast' || c.b === null || c.b.buffer !== a.buffer) return true;
  if (inPlaceGather(c, rank)) return true;  // the call writes only the other chunks
  if (inPlaceScatter(c, rank)) return true;  // peers read only the other chunks; ours is written last
  const b = c.b;
  return b.byteOffset + b.byteLength <= a.byteOffset || a.byteOffset + a.byteLength <= b.byteOffset;
}

/**
 * An allGather whose input is this rank's own chunk of the output (NCCL's in-place convention:
 * input = out[rank·n, (rank+1)·n)): nothing of ours needs copying, and peers may read it there.
 */
export function inPlaceGather(c: Call, rank: number): boolean {
  const a = c.a;
  const b = c.b;
  return c.op === 'allGather' && a !== null && b !== null && a.buffer === b.buffer && a.byteLength > 0 && a.byteOffset === b.byteOffset + rank * a.byteLength && b.byteLength % a.byteLength === 0;
}

/**
 * A reduceScatter whose output is this rank's own chunk of its input (NCCL's in-place
 * convention: out = input[rank·n, (rank+1)·n)). Peers read only the other chunks of our input, and
 * the group reduces into its own region before writing ours (group.ts move): no copy of the input.
 */
export function inPlaceScatter(c: Call, rank: number): boolean {
  const a = c.a;
  const b = c.b;
  return c.op === 'reduceScatter' && a !== null && b !== null && a.buffer === b.buffer && b.byteLength > 0 && b.byteOffset === a.byteOffset + rank * b.byteLength && a.byteLength % b.byteLength === 0;
}

/** Peers can read the send buffer where it is: it lives in this rank's arena. */
export function readableInPlace(c: Call, arena: SharedArrayBuffer, rank: number): boolean {
  return c.a!.buffer === arena && noRacingWrite(c, rank);
}

/**
 * Peers can read the send buffer by address (ordinary memory): with the addon's raw reads
 * installed, for a buffer large enough to be off the V8 heap, and for reductions only sums of
 * floats (rawRead copies or adds); for allToAllRows, only with the row reads installed (and,
 * for sums, floats). Returns the raw access to publish the address with, or null.
 */
export function rawReadable(c: Call, rank: number): RawAccess | null {
  const r = rawAccessFor(c.bytes);
  if (!r) return null;
  if (c.map && (!r.readRows || (c.add && !(c.a instanceof Float32Array || c.a instanceof Float64Array)))) return null;
  const reduces = c.op === 'reduceScatter' || c.op === 'allReduce';
  if (reduces && (!(c.redop === 'sum' || c.redop === 'avg') || !(c.a instanceof Float32Array || c.a instanceof Float64Array))) return null;
  return noRacingWrite(c, rank) ? r : null;
}

/**
 * Copies the send buffer of rank m's call into `mine`, its staging space in the arena, in the form
 * peers read: allToAllRows' chunks packed contiguously in chunk order, a plain allToAll's chunks in
 * place; our own chunk never leaves this rank, so it is not staged. Anything else: all of it.
 */
export function stageInput(mine: CommBuf, c: Call, m: number, P: number): void {
  const a = c.a!;
  if (c.map) {
    const { row, rows: R, send } = c.map;
    for (let j = 0; j < P; j++) {
      if (j === m) continue;
      const dst = mine.subarray(j * R * row, (j + 1) * R * row);
      if (send) bulkCopyRows(dst, null, a, send.subarray(j * R, (j + 1) * R), R, row, false);
      else bulkCopy(dst, a.subarray(j * R * row, (j + 1) * R * row));
    }
  } else if (c.op === 'allToAll' && P > 1) {
    const nc = mine.length / P;
    if (m > 0) bulkCopy(mine.subarray(0, m * nc), a.subarray(0, m * nc));
    if (m < P - 1) bulkCopy(mine.subarray((m + 1) * nc), a.subarray((m + 1) * nc));
  } else {
    bulkCopy(mine, a);
  }
}
