/**
 * Rank functions for allToAllRows (threads needs them as module exports): every map shape the
 * schemes use and a few they do not, on every buffer placement, against the definition computed
 * from every rank's seeded input. Sums are bitwise (inputs are not dyadic).
 */
import type { CommBuf, ProcessGroup, RowMap, World } from '../../src/comm/types.js';
import { setBulkAdd, setRawAccess, setRowCopy, type RawAccess } from '../../src/comm/index.js';
import { nativeBulkAdd, nativeRawAccess, nativeRowCopy } from '../../src/kernels/native/index.js';
import { alloc, diff, DTYPE_NAMES, type DTypeName } from './reference.js';

type Errors = string[];

function input(dt: DTypeName, n: number, k: number, salt: number): CommBuf {
  const b = alloc(dt, n);
  for (let i = 0; i < n; i++) b[i] = dt === 'int32' ? ((i * 7 + k * 13 + salt) % 1000) - 500 : Math.sin(1.3 + 0.7 * i + 2.9 * k + salt) * (1 + (i % 7) / 3);
  return b;
}

/** The definition: out of rank r after allToAllRows(out, input_k on rank k, map, add). */
function reference(ins: readonly CommBuf[], out0: CommBuf, map: RowMap, r: number, add: boolean): CommBuf {
  const { row, rows: R, send, recv } = map;
  const out = out0.slice();
  ins.forEach((x, k) => {
    for (let j = 0; j < R; j++) {
      const s = (send ? send[r * R + j]! : r * R + j) * row;
      const d = (recv ? recv[k * R + j]! : k * R + j) * row;
      for (let e = 0; e < row; e++) out[d + e] = add ? out[d + e]! + x[s + e]! : x[s + e]!;
    }
  });
  return out;
}

/** A seeded permutation of n rows. */
function rowsOf(n: number, seed: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = (seed * 7919 + i * 104729) % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/**
 * n rows as runs of 1-5 consecutive rows in a seeded order (a token's heads bound for one rank,
 * as Ulysses' maps have them): the native copy moves each run as one block.
 */
function runsOf(n: number, seed: number): Int32Array {
  const runs: [number, number][] = [];
  for (let i = 0, k = 0; i < n; k++) {
    const len = Math.min(n - i, 1 + ((seed + k * 3) % 5));
    runs.push([i, len]);
    i += len;
  }
  const order = rowsOf(runs.length, seed);
  const a = new Int32Array(n);
  let o = 0;
  for (const j of order) for (let e = 0; e < runs[j]![1]; e++) a[o++] = runs[j]![0] + e;
  return a;
}

interface Shape {
  name: string;
  R: number;
  row: number;
  send: 'contiguous' | 'perm' | 'runs';
  recv: 'contiguous' | 'perm' | 'replicated' | 'runs';
  add: boolean;
}

function shapes(big: boolean): Shape[] {
  const R = big ? 96 : 5;
  const row = big ? 160 : 3;
  return [
    { name: 'gather rows -> contiguous (to heads, B = 1)', R, row, send: 'perm', recv: 'contiguous', add: false },
    { name: 'contiguous -> scatter rows (to sequence side)', R, row, send: 'contiguous', recv: 'perm', add: false },
    { name: 'both mapped (B > 1)', R, row, send: 'perm', recv: 'perm', add: false },
    { name: 'scatter-add', R, row, send: 'contiguous', recv: 'perm', add: true },
    { name: 'replicated rows summed in source order', R, row, send: 'perm', recv: 'replicated', add: true },
    { name: 'plain (both contiguous)', R, row, send: 'contiguous', recv: 'contiguous', add: false },
    { name: 'runs of consecutive rows on both sides', R, row, send: 'runs', recv: 'runs', add: false },
    { name: 'runs, summed', R, row, send: 'runs', recv: 'runs', add: true },
  ];
}

type Place = 'ordinary' | 'shared' | 'raw';

async function sweep(g: ProcessGroup, place: Place): Promise<Errors> {
  const errs: Errors = [];
  const P = g.size;
  const r = g.rank;
  const held: CommBuf[] = [];
  const mk = (dt: DTypeName, n: number): CommBuf => {
    if (place !== 'shared') return alloc(dt, n);
    const b = g.allocBuffer(dt, n);
    held.push(b);
    return b;
  };
  let salt = 0;
  for (const dt of DTYPE_NAMES) {
    for (const sh of shapes(place === 'raw')) {
      salt++;
      const { R, row } = sh;
      const outRows = sh.recv === 'replicated' ? R : P * R;
      const map: RowMap = {
        row,
        rows: R,
        send: sh.send === 'perm' ? rowsOf(P * R + 3, salt).subarray(0, P * R) : sh.send === 'runs' ? runsOf(P * R + 3, salt).subarray(0, P * R) : null,
        recv: sh.recv === 'perm' ? rowsOf(P * R, salt + 1) : sh.recv === 'replicated' ? sameRows(R, P, salt) : sh.recv === 'runs' ? runsOf(P * R, salt + 1) : null,
      };
      // Inputs have spare rows past what the map reads (a map may skip rows).
      const inRows = P * R + 3;
      const ins = g.ranks.map((_, k) => input(dt, inRows * row, k, salt));
      const x = mk(dt, inRows * row);
      x.set(ins[r]!);
      const out0 = input(dt, outRows * row, r + 100, salt);
      const out = mk(dt, outRows * row);
      out.set(out0);
      await g.allToAllRows(out, x, map, sh.add);
      const d = diff(`${place} ${sh.name} ${dt} P=${P} rank=${r}`, out, reference(ins, out0, map, r, sh.add));
      if (d) errs.push(d);
      const logged = g.log.records[g.log.records.length - 1]!;
      const want = ((P * R * row * x.BYTES_PER_ELEMENT) * (P - 1)) / P;
      if (logged.op !== 'allToAll' || logged.bytes !== want) errs.push(`${place} ${sh.name} ${dt} P=${P}: logged ${logged.op} ${logged.bytes} B, expected allToAll ${want} B`);
    }
  }
  for (const b of held) g.releaseBuffer(b);
  return errs;
}

/** recv rows where every source's R rows land on the same R rows (in a permuted order per source). */
function sameRows(R: number, P: number, seed: number): Int32Array {
  const a = new Int32Array(P * R);
  for (let k = 0; k < P; k++) a.set(rowsOf(R, seed + k), k * R);
  return a;
}

export async function rowsOrdinary(world: World): Promise<Errors> {
  return sweep(world.group, 'ordinary');
}

export async function rowsShared(world: World): Promise<Errors> {
  return sweep(world.group, 'shared');
}

/**
 * Large ordinary buffers with the addon's row reads and row copy installed: peers read the rows
 * by address (counted: a threads run with P > 1 that read none is an error). Without the addon,
 * nothing to test.
 */
export async function rowsRaw(world: World): Promise<Errors> {
  const r = nativeRawAccess();
  if (!r?.readRows) return [];
  let n = 0;
  const readRows = r.readRows;
  const counting: RawAccess = { addressOf: (ta) => r.addressOf(ta), read: (...a) => r.read(...a), readRows: (...a) => (n++, readRows(...a)) };
  setRawAccess(counting);
  setRowCopy(nativeRowCopy());
  setBulkAdd(nativeBulkAdd());
  try {
    const errs = await sweep(world.group, 'raw');
    if (world.transport === 'threads' && world.size > 1 && n === 0) errs.push(`rank ${world.rank}: no raw row read happened`);
    return errs;
  } finally {
    setRawAccess(null);
    setRowCopy(null);
    setBulkAdd(null);
  }
}

/** Rank 1 passes a map with another row size: a mismatch naming both, never a wrong read. */
export async function rowsWrongRow(world: World): Promise<void> {
  const g = world.group;
  const row = g.rank === 1 ? 4 : 2;
  const R = g.rank === 1 ? 2 : 4;
  const x = new Float32Array(g.size * R * row);
  await g.allToAllRows(new Float32Array(x.length), x, { row, rows: R, send: null, recv: null });
}

/** Rank 0 calls allToAllRows where rank 1 calls a plain allToAll of the same bytes. */
export async function rowsAgainstPlain(world: World): Promise<void> {
  const g = world.group;
  const x = new Float32Array(g.size * 8);
  if (g.rank === 0) await g.allToAllRows(new Float32Array(x.length), x, { row: 2, rows: 4, send: null, recv: null });
  else await g.allToAll(new Float32Array(x.length), x);
}

/** A map entry past the input: a clear error on the rank that passed it. */
export async function rowsOutOfRange(world: World): Promise<void> {
  const g = world.group;
  const P = g.size;
  const x = new Float32Array(P * 3 * 2);
  const send = new Int32Array(P * 3);
  send[P * 3 - 1] = P * 3;
  await g.allToAllRows(new Float32Array(x.length), x, { row: 2, rows: 3, send, recv: null });
}
