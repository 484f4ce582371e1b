/** Benchmark plumbing: timing with warm-up and medians, and JSON-line results per theme/machine/day. */
import { appendFileSync, mkdirSync } from 'node:fs';
import { hostname, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/results in the source tree (this file compiles to dist/bench/util.js). */
export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs fn `warmup` times untimed, then `reps` times; returns the seconds of each timed run. */
export async function timeIt(fn: () => unknown | Promise<unknown>, reps: number, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    out.push((performance.now() - t0) / 1000);
  }
  return out;
}

export function machineInfo(): Record<string, unknown> {
  const c = cpus();
  return { host: hostname(), cpu: c[0]?.model ?? 'unknown', cores: c.length, node: process.version };
}

/** bench/results/<theme>_<host>_<yyyymmdd>.jsonl (UTC day): the one place result files are named. */
export function resultsPath(theme: string, d = new Date(), dir = RESULTS_DIR): string {
  const day = `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '_');
  return join(dir, `${theme}_${host}_${day}.jsonl`);
}

/** Appends one JSON line (with time and machine info) to resultsPath(theme); returns the path. */
export function appendResult(theme: string, record: Record<string, unknown>, dir = RESULTS_DIR): string {
  const d = new Date();
  const path = resultsPath(theme, d, dir);
  mkdirSync(dir, { recursive: true });
  appendFileSync(path, JSON.stringify({ time: d.toISOString(), ...machineInfo(), ...record }) + '\n');
  return path;
}
