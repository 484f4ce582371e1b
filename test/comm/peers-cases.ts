/** peerBuffers' rank function for the comm suites (re-exported by cases.ts, which the threads workers load). */
import type { World } from '../../src/comm/types.js';

type Errors = string[];

/**
 * peerBuffers: every rank maps every member's allocBuffer buffer; each rank writes its mark into
 * its own slot of every peer's buffer (disjoint writes), and after a barrier each buffer holds
 * every member's mark, for f32 and f64, on a subgroup too. A buffer the transport cannot map is
 * refused (threads: ordinary memory) with an error naming the rank.
 */
export async function peerBuffersCase(world: World): Promise<Errors> {
  const errs: string[] = [];
  const groups = [world.group, ...(world.size >= 4 ? [world.newGroup([1, 3], 'sp')] : [])];
  for (const g of groups) {
    if (g.rank < 0) continue;
    if (!g.peerBuffers || !g.sharesBuffer) return [`${world.transport}: no peerBuffers`];
    const P = g.size;
    for (const dtype of ['float32', 'float64'] as const) {
      const n = 3 * P + world.rank; // uneven lengths
      const mine = g.allocBuffer(dtype, n);
      mine.fill(-1);
      mine[n - 1] = 100 + world.rank;
      const all = await g.peerBuffers(mine);
      if (all.length !== P || all[g.rank] !== mine) errs.push(`${dtype}: own buffer not returned at group rank ${g.rank}`);
      for (let k = 0; k < P; k++) {
        const want = 3 * P + g.ranks[k]!;
        if (all[k]!.length !== want) errs.push(`${dtype}: member ${k} has ${all[k]!.length} elements, expected ${want}`);
        if (all[k]![want - 1] !== 100 + g.ranks[k]!) errs.push(`${dtype}: member ${k}'s last element reads ${all[k]![want - 1]}`);
      }
      await g.barrier();
      for (let k = 0; k < P; k++) all[k]![3 * g.rank] = 10 * g.rank + k;
      await g.barrier();
      for (let k = 0; k < P; k++) if (mine[3 * k] !== 10 * k + g.rank) errs.push(`${dtype}: slot of member ${k} in rank ${world.rank}'s buffer is ${mine[3 * k]}`);
      await g.barrier();
      g.releaseBuffer(mine);
    }
  }
  if (world.transport === 'threads') {
    const plain = new Float32Array(4);
    if (world.group.sharesBuffer!(plain)) errs.push('threads: an ordinary Float32Array counted as shareable');
    try {
      await world.group.peerBuffers!(plain);
      errs.push('threads: peerBuffers took an ordinary Float32Array');
    } catch (e) {
      if (!new RegExp(`rank ${world.rank}'s buffer is not from allocBuffer`).test((e as Error).message)) errs.push(`threads: unexpected error ${(e as Error).message}`);
    }
  }
  return errs;
}
