/** A rank entry that trains like trainEntry but makes one rank throw mid-run (fault tests). */
import type { World } from '../../src/comm/types.js';
import { trainEntry, type RankArgs } from '../../src/train/rank-entry.js';

export async function faultyTrainEntry(world: World, args: RankArgs & { failRank: number }): Promise<unknown> {
  if (world.rank === args.failRank) {
    // Die a little later, while the other ranks are blocked in a collective waiting for this one.
    await new Promise((r) => setTimeout(r, 300));
    throw new Error('simulated out-of-memory on this rank');
  }
  return trainEntry(world, args);
}
