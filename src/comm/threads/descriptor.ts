/**
 * The part of a call's descriptor in the control block that says which call it is (op, dtype,
 * size, reduce-op, root, peers): written by its rank before PUB, read by the peers to check that
 * every member makes the same call (core.ts sameCall) and to pair sendRecvs. Writer and reader
 * live together so that they cannot drift apart.
 */
import { OPS, REDOPS, type Call } from '../core.js';
import { F, FF, type Layout } from './shm.js';

interface Control {
  i32: Int32Array;
  f64: Float64Array;
  layout: Layout;
}

/** Member m's description of `c` in group gid (plain stores: PUB, stored after, releases them). */
export function writeCall(ctx: Control, gid: number, m: number, c: Call): void {
  const { i32, f64, layout } = ctx;
  const fi = (f: number) => layout.i(gid, m, f);
  i32[fi(F.OP)] = OPS.indexOf(c.op);
  i32[fi(F.DTYPE)] = c.dtype;
  i32[fi(F.REDOP)] = REDOPS.indexOf(c.redop);
  i32[fi(F.ROOT)] = c.root;
  i32[fi(F.DST)] = c.dst;
  i32[fi(F.SRC)] = c.src;
  f64[layout.f(gid, m, FF.BYTES)] = c.bytes;
}

/** Member m's published call in group gid (valid once its PUB is at least the seq in question); no buffers. */
export function readCall(ctx: Control, gid: number, m: number): Call {
  const { i32, f64, layout } = ctx;
  const field = (f: number) => Atomics.load(i32, layout.i(gid, m, f));
  return {
    op: OPS[field(F.OP)]!,
    dtype: field(F.DTYPE),
    bytes: f64[layout.f(gid, m, FF.BYTES)]!,
    redop: REDOPS[field(F.REDOP)]!,
    root: field(F.ROOT),
    dst: field(F.DST),
    src: field(F.SRC),
    a: null,
    b: null,
  };
}
