/**
 * Main-thread side of the threads transport: starts one worker per rank (or borrows them from a
 * ThreadsPool), hands each run a fresh control SAB plus the ranks' arenas, and collects results.
 * The first rank that fails ends the run: raw (by-address) reads of ranks' buffers are withdrawn
 * and waited out, then every worker is terminated (a worker stuck in a synchronous loop or waiting
 * on a peer included) and runRanks rejects naming that rank.
 * Workers are not pinned to cores (that needs native code; a later addon may add it).
 */
import { Worker } from 'node:worker_threads';
import { rankFailure, type ErrorInfo } from '../errors.js';
import { Layout, newArena, withdrawRawBuffers } from './shm.js';

export interface RunMsg {
  runId: number;
  size: number;
  ctl: SharedArrayBuffer;
  arenas: SharedArrayBuffer[];
  module: string;
  fn: string;
  args: unknown;
  timeoutMs: number;
}

export type ReplyMsg = { type: 'done'; runId: number; value: unknown } | { type: 'fail'; runId: number; info: ErrorInfo };

const WORKER_URL = new URL('./worker.js', import.meta.url);
/** How long a failed run waits for its workers to be terminated before giving up on them. */
const TERMINATE_WAIT_MS = 10_000;
/** An aborted rank's report waits this long for the report of the rank that caused it. */
const ROOT_CAUSE_WAIT_MS = 1_000;

/**
 * Workers (one per rank) and their shared arenas, kept between runs to skip start-up (~50 ms per
 * worker) and re-growing memory. Idle workers do not keep the process alive; call close() anyway.
 * A failed run terminates the workers; the next run starts fresh ones.
 */
export class ThreadsPool {
  private workers: (Worker | null)[];
  private readonly arenas: SharedArrayBuffer[];
  private busy = false;
  private nextRun = 1;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`ThreadsPool: size must be a positive integer, got ${size}`);
    this.workers = new Array<Worker | null>(size).fill(null);
    this.arenas = Array.from({ length: size }, () => newArena());
  }

  async close(): Promise<void> {
    await this.kill();
  }

  /** Runs the entry on ranks 0..P−1 (P ≤ size). */
  run(P: number, entry: { module: string; fn: string; args?: unknown }, timeoutMs: number): Promise<unknown[]> {
    if (P > this.size) return Promise.reject(new RangeError(`ThreadsPool of ${this.size} workers cannot run ${P} ranks`));
    if (this.busy) return Promise.reject(new Error('ThreadsPool is already running a job'));
    this.busy = true;
    const layout = new Layout(P);
    const ctl = new SharedArrayBuffer(layout.bytes);
    const arenas = this.arenas.slice(0, P);
    const runId = this.nextRun++;
    const workers = Array.from({ length: P }, (_, r) => (this.workers[r] ??= this.spawn(r)));
    const results = new Array<unknown>(P);
    let remaining = P;
    let settled = false;

    return new Promise<unknown[]>((resolve, reject) => {
      const detach: (() => void)[] = [];
      const finish = () => {
        for (const d of detach) d();
        for (const w of this.workers) w?.unref();
        this.busy = false;
      };
      let fallback: ReturnType<typeof setTimeout> | undefined;
      const fail = (r: number, info: ErrorInfo) => {
        if (settled) return;
        if (info.abort) {
          // A consequence of another rank's failure: that rank's own report is on its way.
          fallback ??= setTimeout(() => fail(r, { ...info, abort: false }), ROOT_CAUSE_WAIT_MS);
          return;
        }
        clearTimeout(fallback);
        settled = true;
        finish();
        this.busy = true; // until the workers are gone
        // Terminating a worker frees its memory: first make sure no peer is inside a raw read of
        // it (ranks waiting in a collective still offer their ordinary buffers by address).
        withdrawRawBuffers(ctl, P);
        void this.kill().then(() => {
          this.busy = false;
          reject(rankFailure(r, info));
        });
      };
      workers.forEach((w, r) => {
        const onMessage = (m: ReplyMsg) => {
          if (m.runId !== runId || settled) return;
          if (m.type === 'fail') return fail(r, m.info);
          results[r] = m.value;
          if (--remaining === 0) {
            settled = true;
            finish();
            resolve(results);
          }
        };
        const onError = (e: Error) => fail(r, { message: e.message, name: e.name, stack: e.stack });
        const onExit = (code: number) => fail(r, { message: `worker exited with code ${code}`, name: 'Error' });
        w.on('message', onMessage).on('error', onError).on('exit', onExit);
        detach.push(() => w.off('message', onMessage).off('error', onError).off('exit', onExit));
        w.ref();
        const msg: RunMsg = { runId, size: P, ctl, arenas, module: entry.module, fn: entry.fn, args: entry.args, timeoutMs };
        w.postMessage(msg);
      });
    });
  }

  private spawn(rank: number): Worker {
    const w = new Worker(WORKER_URL, { workerData: { rank } });
    w.unref();
    return w;
  }

  /** Terminates every worker (they restart on the next run). */
  private async kill(): Promise<void> {
    const ws = this.workers.filter((w): w is Worker => w !== null);
    this.workers = this.workers.map(() => null);
    const all = Promise.all(ws.map((w) => w.terminate().catch(() => 0)));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, TERMINATE_WAIT_MS)))]);
    clearTimeout(timer);
  }
}

/** runRanks(…, { transport: 'threads' }): on the given pool, or on P workers started for this run. */
export async function runThreads(P: number, entry: { module: string; fn: string; args?: unknown }, o: { timeoutMs: number; pool?: ThreadsPool }): Promise<unknown[]> {
  if (o.pool) return o.pool.run(P, entry, o.timeoutMs);
  const pool = new ThreadsPool(P);
  try {
    return await pool.run(P, entry, o.timeoutMs);
  } finally {
    await pool.close();
  }
}
