/**
 * peerBuffers on the threads transport: every member's allocBuffer buffer as a view of its
 * arena, which every worker maps (the arenas are SharedArrayBuffers of one process). Peers may
 * write these views: they are buffers their owner handed out, never the comm regions.
 */
import type { CommBuf, ProcessGroup } from '../types.js';
import { CommError } from '../errors.js';
import { dtypeCode } from '../core.js';
import { BPE, view } from './shm.js';

/**
 * Collective over `g`: all-gathers every member's [byteOffset, length, dtype] of `buf` (in this
 * rank's arena `own`) and returns the members' buffers, index = group rank, ours as it is.
 * `arenas` is indexed by world rank; `worldRank` names this rank in the errors.
 */
export async function mapPeers(g: ProcessGroup, arenas: readonly SharedArrayBuffer[], own: SharedArrayBuffer, worldRank: number, buf: CommBuf): Promise<CommBuf[]> {
  const at = `peerBuffers on axis ${g.axis}`;
  if (buf.buffer !== own) throw new CommError(`${at}: rank ${worldRank}'s buffer is not from allocBuffer (only this rank's shared arena can be mapped by its peers)`, 'allGather', -1, g.axis);
  const dt = dtypeCode(buf);
  const all = new Float64Array(3 * g.size);
  await g.allGather(all, new Float64Array([buf.byteOffset, buf.length, dt]));
  return Array.from({ length: g.size }, (_, k) => {
    if (k === g.rank) return buf;
    if (all[3 * k + 2] !== dt) throw new CommError(`${at}: rank ${g.ranks[k]} passed another dtype than rank ${worldRank}`, 'allGather', -1, g.axis);
    return view(arenas[g.ranks[k]!]!, dt, all[3 * k]!, all[3 * k + 1]! * BPE[dt]!);
  });
}
