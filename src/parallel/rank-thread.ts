/**
 * Per-worker setup every threads-transport rank entry does first: pin the worker to its own core
 * when there are enough cores (an unpinned pair can share a core and wait on each other), and let
 * the transport copy and add with the native addon (memmove and a plain add loop: faster than V8's
 * on shared memory) and read peers' ordinary buffers by address (one copy instead of two).
 */
import { cpus } from 'node:os';
import type { World } from '../comm/types.js';
import { setBulkAdd, setBulkCopy, setRawAccess, setRowCopy } from '../comm/index.js';
import { adviseHugeShared, nativeBulkAdd, nativeBulkCopy, nativeRawAccess, nativeRowCopy, pinCurrentThread } from '../kernels/native/index.js';

/** Returns whether this thread was pinned. */
export function prepareRankThread(world: World): boolean {
  if (world.transport !== 'threads') return false;
  setBulkCopy(nativeBulkCopy());
  setBulkAdd(nativeBulkAdd());
  setRawAccess(nativeRawAccess());
  setRowCopy(nativeRowCopy());
  // The rank's shared arena holds what peers read in place (Ulysses' shared path keeps the model's
  // attention tensors there): huge pages for it, as for the model's own large buffers.
  const probe = world.group.allocBuffer('float32', 1);
  adviseHugeShared(probe);
  world.group.releaseBuffer(probe);
  return cpus().length >= world.size && pinCurrentThread(world.rank);
}
