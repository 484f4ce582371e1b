/**
 * Rank functions shared by the inproc and threads suites (threads needs them as module exports).
 * Each rank regenerates every rank's seeded input, runs the collective, and compares its own
 * output with the sequential definition; the test asserts the returned error list is empty.
 */
import type { CommBuf, ProcessGroup, ReduceOp, World } from '../../src/comm/types.js';
import { DeviceMesh, type MeshSpec } from '../../src/comm/mesh.js';
import { setBulkAdd, setBulkCopy, setRawAccess, type RawAccess } from '../../src/comm/index.js';
import { nativeBulkAdd, nativeBulkCopy, nativeRawAccess } from '../../src/kernels/native/index.js';
import { alloc, diff, DTYPE_NAMES, gen, refAllGather, refAllReduce, refAllToAll, refReduceScatter, type DTypeName } from './reference.js';

type Errors = string[];

export { rowsOrdinary, rowsShared, rowsRaw, rowsWrongRow, rowsAgainstPlain, rowsOutOfRange } from './rows-cases.js';
export { peerBuffersCase } from './peers-cases.js';

function check(errs: Errors, what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  const d = diff(what, got, want);
  if (d) errs.push(d);
}

function lastBytes(g: ProcessGroup): number {
  return g.log.records[g.log.records.length - 1]!.bytes;
}

/**
 * Every op, every dtype, several (uneven) sizes, against the sequential definitions, on group g.
 * `shared`: every buffer comes from g.allocBuffer (the zero-copy path; in-place calls, whose send
 * buffer overlaps what the rank writes, must fall back to staging).
 */
async function sweep(g: ProcessGroup, tag: string, salt0: number, shared = false): Promise<Errors> {
  const errs: Errors = [];
  const held: CommBuf[] = [];
  const mk = (dt: DTypeName, n: number): CommBuf => {
    if (!shared) return alloc(dt, n);
    const b = g.allocBuffer(dt, n);
    held.push(b);
    return b;
  };
  const own = (x: CommBuf): CommBuf => {
    const b = mk(x instanceof Float32Array ? 'float32' : x instanceof Float64Array ? 'float64' : 'int32', x.length);
    b.set(x);
    return b;
  };
  const P = g.size;
  const r = g.rank;
  const ins = (dt: DTypeName, n: number, salt: number) => g.ranks.map((_, k) => gen(dt, n, k, salt));
  let salt = salt0;
  for (const dt of DTYPE_NAMES) {
    const at = (op: string, n: number) => `${tag} ${op} ${dt} n=${n} P=${P} rank=${r}`;
    for (const n of [0, 1, 7, 1023]) {
      for (const op of ['sum', 'avg', 'max'] as ReduceOp[]) {
        const all = ins(dt, n, ++salt);
        const buf = own(all[r]!);
        await g.allReduce(buf, op);
        check(errs, at(`allReduce(${op})`, n), buf, refAllReduce(all, op, dt)[r]!);
        if (lastBytes(g) !== (2 * buf.byteLength * (P - 1)) / P) errs.push(`${at('allReduce', n)}: logged ${lastBytes(g)} B`);
      }
    }
    for (const n of [1, 5, 333]) {
      const all = ins(dt, n, ++salt);
      const out = mk(dt, n * P);
      await g.allGather(out, own(all[r]!));
      check(errs, at('allGather', n), out, refAllGather(all, dt)[r]!);
      if (lastBytes(g) !== all[r]!.byteLength * (P - 1)) errs.push(`${at('allGather', n)}: logged ${lastBytes(g)} B`);
      // In place: the input is this rank's slot of the output.
      const out2 = mk(dt, n * P);
      out2.set(all[r]!, r * n);
      await g.allGather(out2, out2.subarray(r * n, (r + 1) * n));
      check(errs, at('allGather in place', n), out2, refAllGather(all, dt)[r]!);
    }
    for (const n of [1, 3, 100]) {
      for (const op of ['sum', 'avg', 'max'] as ReduceOp[]) {
        const all = ins(dt, n * P, ++salt);
        const out = mk(dt, n);
        await g.reduceScatter(out, own(all[r]!), op);
        check(errs, at(`reduceScatter(${op})`, n), out, refReduceScatter(all, op, dt)[r]!);
        // In place: the output is this rank's chunk of the input.
        const x = own(all[r]!);
        await g.reduceScatter(x.subarray(r * n, (r + 1) * n), x, op);
        check(errs, at(`reduceScatter(${op}) in place`, n), x.subarray(r * n, (r + 1) * n), refReduceScatter(all, op, dt)[r]!);
      }
      if (lastBytes(g) !== (n * P * alloc(dt, 1).byteLength * (P - 1)) / P) errs.push(`${at('reduceScatter', n)}: logged ${lastBytes(g)} B`);
    }
    for (const n of [1, 4, 77]) {
      const all = ins(dt, n * P, ++salt);
      const out = mk(dt, n * P);
      await g.allToAll(out, own(all[r]!));
      const want = refAllToAll(all, dt)[r]!;
      check(errs, at('allToAll', n), out, want);
      const inPlace = own(all[r]!);
      await g.allToAll(inPlace, inPlace);
      check(errs, at('allToAll in place', n), inPlace, want);
    }
    for (const n of [1, 1023]) {
      for (const root of new Set([0, P - 1])) {
        const all = ins(dt, n, ++salt);
        const buf = own(all[r]!);
        await g.broadcast(buf, root);
        check(errs, at(`broadcast(root ${root})`, n), buf, all[root]!);
        if (lastBytes(g) !== (r === root ? buf.byteLength * (P - 1) : 0)) errs.push(`${at('broadcast', n)}: logged ${lastBytes(g)} B`);
      }
    }
    // sendRecv: shift by 1 and by 2 around the group; rank k sends 1 + 13·k elements (uneven).
    for (const shift of [1, 2]) {
      const size = (k: number) => 1 + 13 * k;
      const dst = (r + shift) % P;
      const src = (r - shift + P * 2) % P;
      const recv = mk(dt, size(src));
      await g.sendRecv(own(gen(dt, size(r), r, ++salt)), dst, recv, src);
      check(errs, at(`sendRecv(shift ${shift})`, size(src)), recv, gen(dt, size(src), src, salt));
      if (lastBytes(g) !== (dst === r ? 0 : size(r) * alloc(dt, 1).byteLength)) errs.push(`${at('sendRecv', 0)}: logged ${lastBytes(g)} B`);
    }
    // A chain (not a ring): rank 0 receives nothing, the last rank sends nothing.
    {
      const recv = mk(dt, 9).fill(7);
      await g.sendRecv(own(gen(dt, 9, r, ++salt)), r < P - 1 ? r + 1 : -1, recv, r > 0 ? r - 1 : -1);
      check(errs, at('sendRecv(chain)', 9), recv, r > 0 ? gen(dt, 9, r - 1, salt) : alloc(dt, 9).fill(7));
    }
    await g.barrier();
  }
  for (const b of held) g.releaseBuffer(b);
  return errs;
}

export async function allCollectives(world: World): Promise<Errors> {
  return sweep(world.group, 'world', 0);
}

/** The same sweep with every buffer from allocBuffer, run twice (the second reuses released memory). */
export async function allCollectivesShared(world: World): Promise<Errors> {
  const errs = await sweep(world.group, 'world shared', 0, true);
  return errs.concat(await sweep(world.group, 'world shared again', 50, true));
}

/** overwriteAfterSettle with the native addon's memmove as the transport's bulk copy (1 MB buffers use it). */
export async function overwriteAfterSettleNativeCopy(world: World): Promise<Errors> {
  const copy = nativeBulkCopy();
  if (!copy) return [];
  setBulkCopy(copy);
  try {
    return await overwriteAfterSettle(world);
  } finally {
    setBulkCopy(null);
  }
}

/**
 * allReduce (sum, avg, max) and reduceScatter (sum) of ~1.2 MB per rank with the native add
 * installed as the transport's bulk add (slices of 64 KiB and more take it): bitwise equal to the
 * sequential definition, whose rank-ordered JavaScript sums round exactly as the transport's
 * loop would. Inputs are non-dyadic floats, so every add rounds.
 */
export async function largeSumsNativeAdd(world: World): Promise<Errors> {
  const add = nativeBulkAdd();
  if (!add) return [];
  const g = world.group;
  const P = g.size;
  const errs: Errors = [];
  const input = (dt: DTypeName, n: number, r: number): CommBuf => {
    const b = alloc(dt, n);
    for (let i = 0; i < n; i++) b[i] = Math.sin(1.3 + 0.7 * i + 2.9 * r) * (1 + (i % 7) / 3);
    return b;
  };
  setBulkAdd(add);
  try {
    for (const dt of ['float32', 'float64'] as const) {
      const n = 300_000 - (300_000 % P);
      for (const op of ['sum', 'avg', 'max'] as const) {
        const ins = Array.from({ length: P }, (_, r) => input(dt, n, r));
        const buf = input(dt, n, g.rank);
        await g.allReduce(buf, op);
        check(errs, `allReduce ${op} ${dt} n=${n}`, buf, refAllReduce(ins, op, dt)[g.rank]!);
      }
      const ins = Array.from({ length: P }, (_, r) => input(dt, n, r));
      const out = alloc(dt, n / P);
      await g.reduceScatter(out, input(dt, n, g.rank));
      check(errs, `reduceScatter sum ${dt} n=${n}`, out, refReduceScatter(ins, 'sum', dt)[g.rank]!);
    }
  } finally {
    setBulkAdd(null);
  }
  return errs;
}

/**
 * A send buffer from allocBuffer is overwritten the moment each call settles: peers must have read
 * it by then. Rank r's send sizes vary so copies finish at different times on different ranks.
 */
export async function overwriteAfterSettle(world: World): Promise<Errors> {
  const errs: Errors = [];
  const g = world.group;
  const P = g.size;
  const n = 1 << 18;
  const send = g.allocBuffer('float32', n);
  const recv = g.allocBuffer('float32', n);
  const gathered = new Float32Array(n * P);
  const value = (rank: number, it: number, i: number) => ((rank * 131 + it * 7 + i) % 1021) - 510;
  for (let it = 0; it < 12; it++) {
    for (let i = 0; i < n; i++) send[i] = value(g.rank, it, i);
    if (it % 2 === 0) {
      await g.sendRecv(send, (g.rank + 1) % P, recv, (g.rank - 1 + P) % P);
      send.fill(NaN);
      const from = (g.rank - 1 + P) % P;
      for (let i = 0; i < n; i += 97) if (recv[i] !== value(from, it, i)) errs.push(`it ${it}: recv[${i}] = ${recv[i]}, expected ${value(from, it, i)}`);
    } else {
      await g.allGather(gathered, send);
      send.fill(NaN);
      for (let k = 0; k < P; k++) for (let i = 0; i < n; i += 97) if (gathered[k * n + i] !== value(k, it, i)) errs.push(`it ${it}: gathered[${k}][${i}] wrong`);
    }
  }
  g.releaseBuffer(send);
  g.releaseBuffer(recv);
  return errs.slice(0, 5);
}

/** reduceScatter then allGather == allReduce; allToAll twice is the identity (chunk sense). */
export async function properties(world: World): Promise<Errors> {
  const errs: Errors = [];
  const g = world.group;
  const P = g.size;
  for (const dt of DTYPE_NAMES) {
    for (const n of [1, 17]) {
      const x = gen(dt, n * P, g.rank, 100 + n);
      const ar = x.slice();
      await g.allReduce(ar);
      const part = alloc(dt, n);
      await g.reduceScatter(part, x);
      const full = alloc(dt, n * P);
      await g.allGather(full, part);
      check(errs, `RS∘AG ${dt} n=${n}`, full, ar);
      const once = alloc(dt, n * P);
      const twice = alloc(dt, n * P);
      await g.allToAll(once, x);
      await g.allToAll(twice, once);
      check(errs, `A2A∘A2A ${dt} n=${n}`, twice, x);
    }
  }
  return errs;
}

/** Ring pass with overlap: start sendRecv, compute on the current block, await; P steps. */
export async function ringOverlap(world: World): Promise<Errors> {
  const errs: Errors = [];
  const g = world.group;
  const P = g.size;
  const n = 4096;
  let cur = gen('float64', n, g.rank, 7) as Float64Array;
  let sum = 0;
  for (let step = 0; step < P; step++) {
    const next = new Float64Array(n);
    const pending = g.sendRecv(cur, (g.rank + 1) % P, next, (g.rank - 1 + P) % P);
    for (let i = 0; i < n; i++) sum += cur[i]!; // "compute" while the transfer is in flight
    await pending;
    cur = next;
  }
  let want = 0;
  for (let k = 0; k < P; k++) for (const v of gen('float64', n, k, 7)) want += v;
  if (sum !== want) errs.push(`ring sum ${sum} != ${want}`);
  check(errs, 'ring back home', cur, gen('float64', n, g.rank, 7));
  return errs;
}

/** Every mesh axis runs its own sweep, all axes concurrently. */
export async function meshConcurrent(world: World, spec: MeshSpec): Promise<Errors> {
  const mesh = DeviceMesh.create(spec, world);
  const axes = ['dp', 'sp', 'tp', 'ulysses', 'ring'] as const;
  const lists = await Promise.all(axes.map((a, i) => sweepSmall(mesh.group(a), a, 1000 * (i + 1))));
  const errs = lists.flat();
  // Ring neighbours: pass our global rank to ringNext and receive ringPrev's.
  const ring = mesh.group('ring');
  const got = new Int32Array(1);
  await ring.sendRecv(Int32Array.of(world.rank), mesh.ringNext, got, mesh.ringPrev);
  if (got[0] !== ring.ranks[mesh.ringPrev]) errs.push(`ring neighbour: got ${got[0]}, expected ${ring.ranks[mesh.ringPrev]}`);
  return errs;
}

async function sweepSmall(g: ProcessGroup, tag: string, salt: number): Promise<Errors> {
  const errs: Errors = [];
  const P = g.size;
  for (let it = 0; it < 3; it++) {
    const all = g.ranks.map((_, k) => gen('float64', 33, k, salt + it));
    const buf = all[g.rank]!.slice();
    await g.allReduce(buf);
    check(errs, `${tag} allReduce`, buf, refAllReduce(all, 'sum', 'float64')[g.rank]!);
    const out = new Float64Array(33 * P);
    await g.allGather(out, all[g.rank]!);
    check(errs, `${tag} allGather`, out, refAllGather(all, 'float64')[g.rank]!);
  }
  return errs;
}

export async function returnArgs(world: World, args: unknown): Promise<unknown> {
  return { rank: world.rank, size: world.size, transport: world.transport, args };
}

export async function meshInfo(world: World, spec: MeshSpec): Promise<unknown> {
  const m = DeviceMesh.create(spec, world);
  const axes = ['dp', 'sp', 'tp', 'ulysses', 'ring'] as const;
  return { coords: m.coords, ranks: Object.fromEntries(axes.map((a) => [a, m.group(a).ranks])), next: m.ringNext, prev: m.ringPrev };
}

// ---- faults ----------------------------------------------------------------------------------

/** Rank 2 throws while the others are inside allReduce #1. */
/** The native raw access wrapped to count reads, installed for fn's duration (null without the addon). */
async function withRawReads<T>(fn: (count: () => number) => Promise<T>): Promise<T | null> {
  const r = nativeRawAccess();
  if (!r) return null;
  let n = 0;
  const counting: RawAccess = { addressOf: (ta) => r.addressOf(ta), read: (...a) => (n++, r.read(...a)) };
  setRawAccess(counting);
  setBulkAdd(nativeBulkAdd());
  try {
    return await fn(() => n);
  } finally {
    setRawAccess(null);
    setBulkAdd(null);
  }
}

/**
 * The one-copy path for ordinary buffers: every op with ~100-200 KB per rank in plain typed arrays
 * (peers read them by address), float32/float64/int32, against the sequential definitions; sums
 * bitwise (non-dyadic inputs). max and int32 reductions, and in-place calls whose send buffer
 * overlaps the output, must stage instead, with the same results. Reports whether raw reads ran.
 */
export async function largeOrdinaryRaw(world: World): Promise<Errors> {
  const res = await withRawReads(async (count) => {
    const g = world.group;
    const P = g.size;
    const r = g.rank;
    const errs: Errors = [];
    const n = 24_000 - (24_000 % (P * P));
    const input = (dt: DTypeName, len: number, k: number, salt: number): CommBuf => {
      const b = alloc(dt, len);
      for (let i = 0; i < len; i++) b[i] = dt === 'int32' ? ((i * 7 + k * 13 + salt) % 1000) - 500 : Math.sin(1.3 + 0.7 * i + 2.9 * k + salt) * (1 + (i % 7) / 3);
      return b;
    };
    let salt = 0;
    for (const dt of DTYPE_NAMES) {
      const at = (op: string) => `raw ${op} ${dt} n=${n} P=${P} rank=${r}`;
      for (const op of ['sum', 'avg', 'max'] as ReduceOp[]) {
        salt++;
        const all = g.ranks.map((_, k) => input(dt, n, k, salt));
        const buf = input(dt, n, r, salt);
        await g.allReduce(buf, op);
        check(errs, at(`allReduce(${op})`), buf, refAllReduce(all, op, dt)[r]!);
        const rs = alloc(dt, n / P);
        await g.reduceScatter(rs, input(dt, n, r, salt), op);
        check(errs, at(`reduceScatter(${op})`), rs, refReduceScatter(all, op, dt)[r]!);
      }
      salt++;
      const all = g.ranks.map((_, k) => input(dt, n, k, salt));
      const out = alloc(dt, n * P);
      await g.allGather(out, input(dt, n, r, salt));
      check(errs, at('allGather'), out, refAllGather(all, dt)[r]!);
      // in place (input = our own chunk of out): read there by peers, not copied onto itself
      const gin = alloc(dt, n * P);
      gin.set(input(dt, n, r, salt), r * n);
      await g.allGather(gin, gin.subarray(r * n, (r + 1) * n));
      check(errs, at('allGather in place'), gin, refAllGather(all, dt)[r]!);
      if (P > 1) {
        // input in ANOTHER rank's chunk of out: written during the call, so it must be staged
        const j = (r + 1) % P;
        const gx = alloc(dt, n * P);
        gx.set(input(dt, n, r, salt), j * n);
        await g.allGather(gx, gx.subarray(j * n, (j + 1) * n));
        check(errs, at('allGather into a chunk of the input'), gx, refAllGather(all, dt)[r]!);
      }
      for (const op of ['sum', 'avg'] as ReduceOp[]) {
        // reduceScatter in place (out = our own chunk of the input): reduced, then written over it
        const rin = input(dt, n, r, salt);
        const chunk = rin.subarray(r * (n / P), (r + 1) * (n / P));
        await g.reduceScatter(chunk, rin, op);
        check(errs, at(`reduceScatter(${op}) in place`), chunk, refReduceScatter(all, op, dt)[r]!);
        if (P > 1) {
          // out = ANOTHER rank's chunk of the input, which that rank reads meanwhile: staged
          const j = (r + 1) % P;
          const rx = input(dt, n, r, salt);
          const other = rx.subarray(j * (n / P), (j + 1) * (n / P));
          await g.reduceScatter(other, rx, op);
          check(errs, at(`reduceScatter(${op}) into a chunk of the input`), other, refReduceScatter(all, op, dt)[r]!);
        }
      }
      const a2a = alloc(dt, n);
      await g.allToAll(a2a, input(dt, n, r, salt));
      check(errs, at('allToAll'), a2a, refAllToAll(all, dt)[r]!);
      // in place: the send buffer is the output (staged, not read by address)
      const inPlace = input(dt, n, r, salt);
      await g.allToAll(inPlace, inPlace);
      check(errs, at('allToAll in place'), inPlace, refAllToAll(all, dt)[r]!);
      const b = r === 0 ? input(dt, n, 0, salt) : alloc(dt, n);
      await g.broadcast(b, 0);
      check(errs, at('broadcast'), b, all[0]!);
      if (P > 1) {
        const recv = alloc(dt, n);
        await g.sendRecv(input(dt, n, r, salt), (r + 1) % P, recv, (r - 1 + P) % P);
        check(errs, at('sendRecv'), recv, all[(r - 1 + P) % P]!);
      }
    }
    if (world.transport === 'threads' && P > 1 && count() === 0) errs.push(`rank ${r}: no raw read happened`);
    return errs;
  });
  return res ?? [];
}

/**
 * Rank 0 offers a large ordinary buffer by address in allGather, then rank 1 throws before
 * calling it: rank 0 must stop promptly (the launcher withdraws raw buffers and terminates).
 */
export async function throwWhilePeerOffersRaw(world: World): Promise<void> {
  await withRawReads(async () => {
    const g = world.group;
    await g.barrier();
    if (world.rank === 1) {
      await new Promise((res) => setTimeout(res, 50));
      throw new Error('boom on rank 1');
    }
    await g.allGather(new Float32Array(2 * 65536), new Float32Array(65536));
  });
}

/**
 * A raw buffer outlives no error path: rank 1 arrives at a large sendRecv only after rank 0 timed
 * out in it. Rank 0 withdrew its buffer when it failed, so rank 1 must fail cleanly (or be stopped
 * by the launcher), never read freed memory.
 */
export async function lateReaderAfterTimeout(world: World): Promise<void> {
  await withRawReads(async () => {
    const g = world.group;
    await g.barrier();
    if (world.rank === 1) await new Promise((res) => setTimeout(res, 2500));
    const peer = 1 - world.rank;
    await g.sendRecv(new Float32Array(65536).fill(world.rank), peer, new Float32Array(65536), peer);
  });
}

export async function throwMidAllReduce(world: World): Promise<void> {
  const g = world.group;
  await g.allReduce(new Float32Array(64));
  if (world.rank === 2) {
    await new Promise((r) => setTimeout(r, 50));
    throw new Error('boom on rank 2');
  }
  await g.allReduce(new Float32Array(64));
}

/** Rank 1 skips allReduce #1 and sleeps past the timeout (alive, so not an exit). */
export async function skipCollective(world: World, args: { sleepMs: number }): Promise<void> {
  const g = world.group;
  await g.allReduce(new Float32Array(8));
  if (world.rank === 1) {
    await new Promise((r) => setTimeout(r, args.sleepMs));
    return;
  }
  await g.allReduce(new Float32Array(8));
}

/** Rank 1 passes 1024 floats where everyone else passes 256, at allReduce #1 (seq 1). */
export async function wrongSize(world: World): Promise<void> {
  const g = world.group;
  await g.allReduce(new Float32Array(8));
  await g.allReduce(new Float32Array(world.rank === 1 ? 1024 : 256));
}

/** Rank 1 calls allGather where rank 0 calls allReduce. */
export async function wrongOp(world: World): Promise<void> {
  const g = world.group;
  if (world.rank === 1) await g.allGather(new Float32Array(1024 * g.size), new Float32Array(1024));
  else await g.allReduce(new Float32Array(256));
}

/** Rank 0 returns while the others wait in a barrier. */
export async function returnEarly(world: World): Promise<void> {
  if (world.rank !== 0) await world.group.barrier();
}

export type { CommBuf };

/** Rank 1 throws; rank 0 is stuck in a synchronous loop (threads: must still be terminated). */
export async function spinWhilePeerFails(world: World): Promise<void> {
  if (world.rank === 1) {
    await new Promise((r) => setTimeout(r, 20));
    throw new Error('boom on rank 1');
  }
  for (;;) {
    // busy: never yields to the event loop
  }
}

/** Returns something that cannot be structured-cloned. */
export async function badResult(): Promise<unknown> {
  return { f: () => 1 };
}
