/**
 * runRanks: the launcher. A function runs on the inproc transport; an entry ({ module, fn, args })
 * runs on either transport, so the same test code can exercise both.
 */
import type { World } from './types.js';
import { errorInfo, rankFailure, CommAbortError } from './errors.js';
import { InprocFabric, InprocWorld } from './inproc.js';
import { runThreads, type ThreadsPool } from './threads/launcher.js';
import { loadEntry, moduleUrl, type RankEntry } from './entry.js';

export type { RankEntry };

export interface RunRanksOptions {
  /** Default 'inproc'. 'threads' needs a RankEntry (functions cannot be sent to workers). */
  transport?: 'inproc' | 'threads';
  /** A collective waiting longer than this rejects, naming the ranks that did not arrive. Default 60 000; 0 = never. */
  timeoutMs?: number;
  /** threads only: reuse these workers (and their shared memory) instead of starting P new ones. */
  pool?: ThreadsPool;
}

export const DEFAULT_TIMEOUT_MS = 60_000;

/** Runs fn on P ranks; resolves with the P results in rank order, or rejects with a RankFailure. */
export function runRanks<T>(P: number, fn: (world: World) => Promise<T>, opts?: RunRanksOptions): Promise<T[]>;
export function runRanks<T = unknown>(P: number, entry: RankEntry, opts?: RunRanksOptions): Promise<T[]>;
export async function runRanks<T>(P: number, what: ((world: World) => Promise<T>) | RankEntry, opts: RunRanksOptions = {}): Promise<T[]> {
  if (!Number.isInteger(P) || P < 1) throw new RangeError(`runRanks: P must be a positive integer, got ${P}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const transport = opts.transport ?? 'inproc';
  if (transport === 'threads') {
    if (typeof what === 'function') throw new TypeError("runRanks: the threads transport needs an entry { module, fn, args }, not a function");
    return (await runThreads(P, { module: moduleUrl(what.module), fn: what.fn, args: what.args }, { timeoutMs, pool: opts.pool })) as T[];
  }
  if (transport !== 'inproc') throw new TypeError(`runRanks: unknown transport '${String(transport)}'`);
  if (typeof what === 'function') return runInproc(P, (w) => what(w), timeoutMs);
  const f = await loadEntry<T>(what);
  return runInproc(P, (w) => f(w, structuredClone(what.args)), timeoutMs);
}

function runInproc<T>(P: number, fn: (world: World) => Promise<T>, timeoutMs: number): Promise<T[]> {
  const fabric = new InprocFabric(P, timeoutMs);
  const worlds = Array.from({ length: P }, (_, r) => new InprocWorld(fabric, r));
  const results = new Array<T>(P);
  let remaining = P;
  let failed = false;
  return new Promise<T[]>((resolve, reject) => {
    for (let r = 0; r < P; r++) {
      Promise.resolve()
        .then(() => fn(worlds[r]!))
        .then(
          (v) => {
            results[r] = v;
            fabric.exit(r);
            if (--remaining === 0 && !failed) resolve(results);
          },
          (e: unknown) => {
            // The first failure is the root cause: the others only fail because of it (abort).
            if (failed) return;
            if (e instanceof CommAbortError) return; // cannot come first, but never blame a victim
            failed = true;
            const info = errorInfo(e);
            fabric.abort(r, info.message);
            reject(rankFailure(r, info, e));
          },
        );
    }
  });
}
