/** Public surface of the comm layer. */
export type * from './types.js';
export { runRanks, DEFAULT_TIMEOUT_MS, type RankEntry, type RunRanksOptions } from './run.js';
export { DeviceMesh, meshShape, MESH_AXES, type MeshAxis, type MeshSpec, type MeshShape, type MeshCoords } from './mesh.js';
export { CommError, CommAbortError, RankFailure } from './errors.js';
export { MemoryCommLog, sentBytes } from './log.js';
export { ThreadsPool } from './threads/launcher.js';
export { setBulkAdd, setBulkCopy, setRawAccess, setRowCopy, type BulkAdd, type BulkCopy, type RawAccess, type RowCopy } from './threads/copy.js';
