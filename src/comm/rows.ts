/**
 * Row maps of allToAllRows (types.ts RowMap): the argument checks every transport runs, and the
 * plain row copy both the fallback (pack, allToAll, unpack) and the threads transport's JavaScript
 * path use. Rows are `row` elements; row index i covers elements [i·row, (i + 1)·row).
 */
import type { CommBuf, RowMap } from './types.js';
import { accumulate } from './core.js';

/** Throws (a plain Error naming the values) when `map` cannot serve input/out on a group of P. */
export function checkRowMap(map: RowMap, P: number, input: CommBuf, out: CommBuf): void {
  const { row, rows: R } = map;
  if (!Number.isInteger(row) || row < 1) throw new RangeError(`row map: row ${row} must be a positive integer`);
  if (!Number.isInteger(R) || R < 0) throw new RangeError(`row map: rows ${R} must be a non-negative integer`);
  const sides = [['send', map.send, input, 'input'], ['recv', map.recv, out, 'out']] as const;
  for (const [what, idx, buf, name] of sides) {
    const have = Math.floor(buf.length / row);
    if (idx === null) {
      if (P * R > have) throw new RangeError(`row map: ${name} has ${have} rows of ${row}, contiguous ${what} needs size·rows = ${P}·${R}`);
      continue;
    }
    if (idx.length !== P * R) throw new RangeError(`row map: ${what} has ${idx.length} entries, expected size·rows = ${P}·${R} = ${P * R}`);
    for (let i = 0; i < idx.length; i++) {
      const v = idx[i]!;
      if (v < 0 || v >= have) throw new RangeError(`row map: ${what}[${i}] = ${v} is not a row of ${name} (${have} rows of ${row})`);
    }
  }
  if (input.buffer === out.buffer && input.byteOffset < out.byteOffset + out.byteLength && out.byteOffset < input.byteOffset + input.byteLength) {
    throw new RangeError('row map: input and out overlap');
  }
}

/** Highest row index + 1 that rows [r0, r0 + n) of a side read or write (null: contiguous). */
export function rowExtent(idx: Int32Array | null, r0: number, n: number): number {
  if (idx === null) return r0 + n;
  let m = 0;
  for (let i = r0; i < r0 + n; i++) if (idx[i]! + 1 > m) m = idx[i]! + 1;
  return m;
}

/**
 * For r < n: dst row (dRows ? dRows[r] : r) = (add: +=) src row (sRows ? sRows[r] : r), rows of
 * `row` elements, in order of r (so repeated destination rows sum in that order).
 */
export function copyRowsJs(dst: CommBuf, dRows: Int32Array | null, src: CommBuf, sRows: Int32Array | null, n: number, row: number, add: boolean): void {
  for (let r = 0; r < n; r++) {
    const d = (dRows ? dRows[r]! : r) * row;
    const s = (sRows ? sRows[r]! : r) * row;
    const from = src.subarray(s, s + row);
    if (add) accumulate(dst.subarray(d, d + row), from, 'sum');
    else dst.set(from, d);
  }
}
