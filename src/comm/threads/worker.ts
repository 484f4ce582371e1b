/**
 * Worker entry of the threads transport: one worker = one rank, reused for several runs when it
 * belongs to a ThreadsPool. Each run message carries the run's control SAB and every rank's
 * arena; the result (or a structured error description) goes back to the launcher.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorInfo } from '../errors.js';
import { loadEntry } from '../entry.js';
import type { ThreadsCtx } from './group.js';
import { spinMs } from './spin.js';
import { announceExit, ThreadsWorld } from './world.js';
import { ArenaAlloc, Layout } from './shm.js';
import type { RunMsg, ReplyMsg } from './launcher.js';

const rank = (workerData as { rank: number }).rank;
const port = parentPort!;

async function run(msg: RunMsg): Promise<ReplyMsg> {
  const layout = new Layout(msg.size);
  const { i32, f64 } = layout.views(msg.ctl);
  const ctx: ThreadsCtx = { rank, size: msg.size, layout, i32, f64, arenas: msg.arenas, alloc: new ArenaAlloc(msg.arenas[rank]!), timeoutMs: msg.timeoutMs, spinMs: spinMs(msg.size) };
  try {
    const fn = await loadEntry<unknown>({ module: msg.module, fn: msg.fn });
    const value = await fn(new ThreadsWorld(ctx), msg.args);
    announceExit(ctx, false);
    return { type: 'done', runId: msg.runId, value };
  } catch (e) {
    // A rank that only failed because another one did must not be blamed: keep the abort flag.
    announceExit(ctx, !errorInfo(e).abort);
    return { type: 'fail', runId: msg.runId, info: errorInfo(e) };
  }
}

port.on('message', (msg: RunMsg) => {
  void run(msg).then((reply) => {
    try {
      port.postMessage(reply);
    } catch (e) {
      // The result could not be structured-cloned: that is this rank's failure.
      port.postMessage({ type: 'fail', runId: msg.runId, info: { ...errorInfo(e), message: `result is not structured-cloneable: ${errorInfo(e).message}` } } satisfies ReplyMsg);
    }
  });
});
