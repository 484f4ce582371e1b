/**
 * How the threads transport waits on a group's bell before it sleeps: a short poll, since waking
 * from Atomics.waitAsync costs a task on the event loop while a peer on its own core usually
 * rings within microseconds.
 */
import { availableParallelism } from 'node:os';

/**
 * How long a waiter polls the bell before sleeping (ms). Waking from Atomics.waitAsync costs
 * ~10–20 µs (a task on the event loop) and a call waits two or three times, while a peer on its
 * own core usually rings within microseconds. With more ranks than cores spinning would steal the
 * peer's core, so it is off; SEQPAR_COMM_SPIN_US overrides.
 */
export function spinMs(ranks: number): number {
  const env = process.env['SEQPAR_COMM_SPIN_US'];
  if (env !== undefined && env !== '') return Number(env) / 1000;
  return ranks <= availableParallelism() ? 0.05 : 0;
}

/** Polls i32[i] for up to `ms` milliseconds; true once it no longer equals `v`. */
function spinFor(i32: Int32Array, i: number, v: number, ms: number): boolean {
  if (ms <= 0) return false;
  const end = performance.now() + ms;
  do {
    for (let k = 0; k < 64; k++) if (Atomics.load(i32, i) !== v) return true;
  } while (performance.now() < end);
  return false;
}

/**
 * One group's poll budget, adapted per wait: it halves after a poll that saw nothing (a peer
 * sharing our core cannot ring while we spin) and doubles back up to `maxMs` after one that did.
 */
export class AdaptiveSpin {
  private budget: number;

  constructor(private readonly maxMs: number) {
    this.budget = maxMs;
  }

  /** Polls i32[bell] while it equals b; true when the bell moved (no sleep needed). */
  spin(i32: Int32Array, bell: number, b: number): boolean {
    if (this.maxMs <= 0) return false;
    const rang = spinFor(i32, bell, b, this.budget);
    this.budget = rang ? Math.min(this.maxMs, this.budget * 2) : Math.max(this.maxMs / 64, this.budget / 2);
    return rang;
  }
}
