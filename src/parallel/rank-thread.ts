/**
 * Per-worker setup every threads-transport rank entry does first: pin the worker to its own core
 * when there are enough cores (an unpinned pair can share a core and wait on each other), and let
 * the transport copy with the native addon's memmove (faster than V8's on shared memory).
 */
import { cpus } from 'node:os';
import type { World } from '../comm/types.js';
import { setBulkCopy } from '../comm/index.js';
import { nativeBulkCopy, pinCurrentThread } from '../kernels/native/index.js';

/** Returns whether this thread was pinned. */
export function prepareRankThread(world: World): boolean {
  if (world.transport !== 'threads') return false;
  setBulkCopy(nativeBulkCopy());
  return cpus().length >= world.size && pinCurrentThread(world.rank);
}
