/**
 * Worker side of the threads transport: the World a rank entry receives (its world group and the
 * groups it creates, checked to be the same on every rank), and the exit announcement that makes
 * peers waiting on a returned or failed rank stop at once.
 */
import type { AxisName, World } from '../types.js';
import { checkGroupRanks } from '../groups.js';
import { ThreadsGroup, type ThreadsCtx } from './group.js';
import { hash32, MAX_GROUPS } from './shm.js';

export class ThreadsWorld implements World {
  readonly transport = 'threads' as const;
  readonly group: ThreadsGroup;
  private nextGroup = 0;

  constructor(private readonly ctx: ThreadsCtx) {
    this.group = this.newGroup(
      Array.from({ length: ctx.size }, (_, i) => i),
      'world',
    );
  }

  get rank(): number {
    return this.ctx.rank;
  }
  get size(): number {
    return this.ctx.size;
  }

  newGroup(ranks: readonly number[], axis: AxisName): ThreadsGroup {
    checkGroupRanks(ranks, this.size);
    const id = this.nextGroup++;
    if (id >= MAX_GROUPS) throw new RangeError(`newGroup: more than ${MAX_GROUPS} groups in one run`);
    const key = `${axis}|${ranks.join(',')}`;
    const h = hash32(key);
    const old = Atomics.compareExchange(this.ctx.i32, this.ctx.layout.hash(id), 0, h);
    if (old !== 0 && old !== h) throw new Error(`newGroup #${id}: rank ${this.rank} passed [${ranks.join(', ')}] (axis ${axis}) but another rank passed a different list or axis`);
    return new ThreadsGroup(this.ctx, id, axis, ranks.indexOf(this.rank), [...ranks], this.rank);
  }
}

/**
 * Marks this rank as returned (or failed: every waiting peer then aborts) and wakes every group,
 * so peers waiting for it fail at once instead of at their timeout.
 */
export function announceExit(ctx: ThreadsCtx, failed: boolean): void {
  Atomics.store(ctx.i32, ctx.layout.exit(ctx.rank), 1);
  if (failed) Atomics.compareExchange(ctx.i32, ctx.layout.failed, 0, ctx.rank + 1);
  for (let g = 0; g < MAX_GROUPS; g++) {
    const b = ctx.layout.bell(g);
    Atomics.add(ctx.i32, b, 1);
    Atomics.notify(ctx.i32, b);
  }
}
