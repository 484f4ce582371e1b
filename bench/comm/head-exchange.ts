/**
 * The Ulysses head exchange on 2 worker threads, two ways in one run: the old pack-then-allToAll
 * (gather each destination's heads into a shared send buffer, then allToAll) against one
 * allToAllRows (peers read the heads straight out of the [T, H, D] tensor). Both directions:
 * to heads ([T, H, D] -> [P·T, H/P, D]) and back with a sum (gradients). Results are checked
 * equal, bitwise, before timing; ratio = pack+allToAll time / allToAllRows time.
 */
import { runRanks } from '../../src/comm/index.js';
import type { World } from '../../src/comm/types.js';
import { selectKernels } from '../../src/kernels/index.js';
import { prepareRankThread } from '../../src/parallel/rank-thread.js';
import { a2aMaps, queryHeadSplit } from '../../src/parallel/util.js';
import { appendResult, median } from '../util.js';

export interface HeadExchangeArgs {
  T: number;
  H: number;
  D: number;
  iters: number;
  rounds: number;
}

/** Per round (alternating), ms per exchange: [packed, rows] for each direction. */
export interface HeadExchangeTimes {
  toHeads: [number[], number[]];
  toSeqAdd: [number[], number[]];
  /**
   * To heads for three such tensors at once, as one [T, 3H, D] allToAllRows (what fusing Ulysses'
   * q, k, v exchanges would send), ms per call: against three calls of one tensor.
   */
  fused3: number[];
}

export async function headExchangeEntry(world: World, a: HeadExchangeArgs): Promise<HeadExchangeTimes> {
  prepareRankThread(world);
  const g = world.group;
  const P = g.size;
  const { kernels } = selectKernels('native');
  const maps = a2aMaps({ split: queryHeadSplit('bench', a.H, P), row: a.D }, 1, a.T, P);
  const C = maps.toHeads.row;
  const n = a.T * a.H * a.D;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + g.rank));
  const [head, headP, send, recv] = [0, 0, 0, 0].map(() => g.allocBuffer('float32', n)) as Float32Array[];
  const [dx, dxP] = [new Float32Array(n), new Float32Array(n)];
  const packed = {
    toHeads: async () => {
      kernels.embeddingForward({ out: send! }, { tokens: maps.toHeads.send!, weight: x }, { N: P * a.T, C });
      await g.allToAll(headP!, send!);
    },
    toSeqAdd: async () => {
      await g.allToAll(recv!, headP!);
      kernels.embeddingBackward({ dWeight: dxP }, { dOut: recv!, tokens: maps.toSeq.recv! }, { N: P * a.T, C });
    },
  };
  const rows = {
    toHeads: () => g.allToAllRows(head!, x, maps.toHeads),
    toSeqAdd: () => g.allToAllRows(dx, head!, maps.toSeq, true),
  };
  for (const k of ['toHeads', 'toSeqAdd'] as const) {
    await packed[k]();
    await rows[k]();
  }
  const maps3 = a2aMaps({ split: queryHeadSplit('bench', 3 * a.H, P), row: a.D }, 1, a.T, P);
  const [x3, head3] = [g.allocBuffer('float32', 3 * n), g.allocBuffer('float32', 3 * n)] as Float32Array[];
  x3!.fill(g.rank + 1);
  const fused3 = () => g.allToAllRows(head3!, x3!, maps3.toHeads);
  await fused3();
  const same = (u: Float32Array, v: Float32Array) => u.every((e, i) => Object.is(e, v[i]));
  if (!same(head!, headP!) || !same(dx, dxP)) throw new Error(`head exchange: allToAllRows differs from pack + allToAll on rank ${g.rank}`);
  const out: HeadExchangeTimes = { toHeads: [[], []], toSeqAdd: [[], []], fused3: [] };
  for (let r = 0; r < a.rounds; r++) {
    await g.barrier();
    const t3 = performance.now();
    for (let i = 0; i < a.iters; i++) await fused3();
    out.fused3.push((performance.now() - t3) / a.iters);
    for (const k of ['toHeads', 'toSeqAdd'] as const) {
      for (const [j, f] of [packed[k], rows[k]].entries()) {
        await g.barrier();
        const t0 = performance.now();
        for (let i = 0; i < a.iters; i++) await f();
        out[k][j]!.push((performance.now() - t0) / a.iters);
      }
    }
  }
  return out;
}

export async function runHeadExchangeBench(o: { smoke?: boolean; log?: (s: string) => void } = {}): Promise<Record<string, unknown>[]> {
  const log = o.log ?? (() => {});
  const shapes = o.smoke ? [{ T: 64, H: 4, D: 8 }] : [{ T: 2048, H: 8, D: 32 }, { T: 8192, H: 8, D: 32 }, { T: 2048, H: 8, D: 128 }];
  const rowsOut: Record<string, unknown>[] = [];
  const entry = new URL(import.meta.url).href;
  for (const s of shapes) {
    const args: HeadExchangeArgs = { ...s, iters: o.smoke ? 1 : 20, rounds: o.smoke ? 1 : 9 };
    const res = await runRanks<HeadExchangeTimes>(2, { module: entry, fn: 'headExchangeEntry', args }, { transport: 'threads', timeoutMs: 0 });
    for (const dir of ['toHeads', 'toSeqAdd'] as const) {
      // the slower rank of each round
      const per = (j: 0 | 1) => res[0]![dir][j].map((t, i) => Math.max(t, res[1]![dir][j][i]!));
      const packedMs = median(per(0));
      const rowsMs = median(per(1));
      const bytes = s.T * s.H * s.D * 4;
      const row = { bench: 'comm/head-exchange', ranks: 2, direction: dir, T: s.T, H: s.H, D: s.D, bytes, packedMs, rowsMs, ratio: packedMs / rowsMs, rounds: args.rounds, iters: args.iters, smoke: !!o.smoke };
      log(`head exchange ${dir.padEnd(8)} [${s.T}, ${s.H}, ${s.D}] (${(bytes / 2 ** 20).toFixed(0)} MiB): pack+allToAll ${packedMs.toFixed(3)} ms, allToAllRows ${rowsMs.toFixed(3)} ms, ratio ${(packedMs / rowsMs).toFixed(2)}`);
      rowsOut.push(row);
      if (!o.smoke) appendResult('comm', row);
    }
    // q, k, v in one exchange instead of three: the same bytes, two handshakes fewer
    const rowsMs = median(res[0]!.toHeads[1].map((t, i) => Math.max(t, res[1]!.toHeads[1][i]!)));
    const fusedMs = median(res[0]!.fused3.map((t, i) => Math.max(t, res[1]!.fused3[i]!)));
    const fusedRow = { bench: 'comm/head-exchange-fused3', ranks: 2, T: s.T, H: s.H, D: s.D, bytes: 3 * s.T * s.H * s.D * 4, fusedMs, threeCallsMs: 3 * rowsMs, fusedOverThree: fusedMs / (3 * rowsMs), rounds: args.rounds, iters: args.iters, smoke: !!o.smoke };
    log(`head exchange, three tensors [${s.T}, ${s.H}, ${s.D}] in one call: ${fusedMs.toFixed(3)} ms against three calls ${(3 * rowsMs).toFixed(3)} ms (ratio ${(fusedMs / (3 * rowsMs)).toFixed(2)})`);
    rowsOut.push(fusedRow);
    if (!o.smoke) appendResult('comm', fusedRow);
  }
  return rowsOut;
}
