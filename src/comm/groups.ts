/** Checks shared by every transport's World.newGroup. */

export function checkGroupRanks(ranks: readonly number[], worldSize: number): void {
  if (ranks.length === 0) throw new RangeError('newGroup: empty rank list');
  const seen = new Set<number>();
  for (const r of ranks) {
    if (!Number.isInteger(r) || r < 0 || r >= worldSize) throw new RangeError(`newGroup: rank ${r} is not in [0, ${worldSize})`);
    if (seen.has(r)) throw new RangeError(`newGroup: rank ${r} listed twice in [${ranks.join(', ')}]`);
    seen.add(r);
  }
}
