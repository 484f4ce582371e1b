/**
 * USP (algorithms.md §8): Ulysses along the `ulysses` mesh axis around a zigzag ring along the
 * `ring` axis. Rank (ρ, υ) — sp index ρ·u + υ, the DeviceMesh order — holds piece υ of the zigzag
 * pair of ring rank ρ; the ulysses all-to-all gathers the whole pair for H/u heads, which is exactly
 * the zigzag ring's layout over the ring group; the inverse all-to-all brings the output home.
 * u = 1 is a zigzag ring, r = 1 is Ulysses on contiguous tokens.
 */
import type { Kernels } from '../kernels/types.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttentionOp, AttnDims } from './types.js';
import { hybridLayout, padLayout, zigzagLayout } from './layout.js';
import { checkShapes } from './local.js';
import { ringInner, tileRules, type RingOptions } from './ring.js';
import { ulyssesSplits, ulyssesWrap } from './ulysses.js';
import { Scratch } from './util.js';

export function createHybridAttention(
  groups: { ulysses: ProcessGroup; ring: ProcessGroup },
  kernels: Kernels,
  S: number,
  opts: RingOptions = {},
): AttentionOp & { readonly scratch: Scratch; readonly positions: Int32Array } {
  const u = groups.ulysses.size;
  const r = groups.ring.size;
  const realS = opts.realS ?? S;
  const layout = padLayout(hybridLayout(S, u, r), realS);
  const rho = groups.ring.rank;
  const spIndex = rho * u + groups.ulysses.rank;
  const scratch = new Scratch(groups.ring);
  const ring = ringInner(groups.ring, kernels, padLayout(zigzagLayout(S, r, 'hybrid'), realS), tileRules.zigzag, scratch, opts);
  const members = Array.from({ length: u }, (_, v) => layout.positions(rho * u + v));
  const wrap = ulyssesWrap('hybrid', groups.ulysses, members, ring, scratch, 'ulysses');
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T !== layout.T) throw new Error(`hybrid: dims S=${d.S} T=${d.T} but op built for S=${S}, sp=${u * r} (T=${layout.T})`);
    ulyssesSplits('hybrid', d.H, d.G, u, 'ulysses');
  };
  return {
    name: 'hybrid',
    layout,
    scratch,
    positions: layout.positions(spIndex),
    savedElements: (d) => wrap.savedElements(d),
    async forward(o, i, d) {
      check(d);
      checkShapes('hybrid', d, { ...o, ...i });
      scratch.begin();
      await wrap.forward(o, i, d);
    },
    async backward(g, i, d) {
      check(d);
      checkShapes('hybrid', d, { ...g, ...i });
      scratch.begin();
      await wrap.backward(g, i, d);
    },
  };
}
