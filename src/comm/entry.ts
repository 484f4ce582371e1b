/** Entry points named by module + export, the only form that can cross into a worker. */
import { pathToFileURL } from 'node:url';
import type { World } from './types.js';

/** A function exported by a compiled ESM module: `export async function fn(world, args)`. */
export interface RankEntry {
  /** Absolute path or file URL of a compiled .js module. */
  module: string | URL;
  /** Export name of `(world: World, args: unknown) => Promise<unknown>`. */
  fn: string;
  /** Structured-cloneable; every rank gets its own clone. */
  args?: unknown;
}

export type RankFn<T> = (world: World, args?: unknown) => Promise<T>;

export function moduleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href;
  // 'C:\…' is a Windows path, not a URL scheme.
  return /^[a-z][a-z0-9+.-]*:/i.test(m) && !/^[a-z]:[\\/]/i.test(m) ? m : pathToFileURL(m).href;
}

export async function loadEntry<T>(entry: RankEntry): Promise<RankFn<T>> {
  const url = moduleUrl(entry.module);
  const mod = (await import(url)) as Record<string, unknown>;
  const f = mod[entry.fn];
  if (typeof f !== 'function') throw new TypeError(`${url} has no exported function '${entry.fn}'`);
  return f as RankFn<T>;
}
