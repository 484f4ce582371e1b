/**
 * Ring Self-Attention (algorithms.md §1, Li et al. 2021) — the historical baseline, kept faithful
 * on purpose: contiguous blocks, one synchronous ring pass of K to build each rank's FULL score rows
 * [B, H, T, S] (materialised: memory quadratic in S, divided by P — that is its point), a local
 * softmax over complete rows, and a second ring pass of V for A·V. Masked pairs are computed then
 * discarded (no causal saving). It does not use the block kernel.
 *
 * Backward (ColossalAI structure, exact gradients with no 1/P factor, §1.9): the op is stateless,
 * so the K pass is repeated to recompute A (keeping the K blocks it sees); a V pass forms dA and my
 * queries' contributions to every dV; dK likewise; one all-reduce of the full-length [dK | dV]
 * sums them over ranks, and each rank keeps its block.
 */
import type { Buf } from '../tensor/dtype.js';
import type { ProcessGroup } from '../comm/types.js';
import type { AttentionOp, AttnDims } from './types.js';
import { contiguousLayout, padLayout } from './layout.js';
import { checkShapes } from './local.js';
import { Scratch } from './util.js';

export function createRsaAttention(group: ProcessGroup, S: number, realS = S): AttentionOp & { readonly scratch: Scratch; readonly positions: Int32Array } {
  const P = group.size;
  const r = group.rank;
  // Padding (positions >= realS) is masked as the kernels mask it: never attended, attends nothing.
  const layout = padLayout(contiguousLayout(S, P, 'rsa'), realS);
  const T = layout.T;
  const next = (r + 1) % P;
  const prev = (r - 1 + P) % P;
  const scratch = new Scratch(group);
  const check = (d: AttnDims) => {
    if (d.S !== S || d.T !== T) throw new Error(`rsa: dims S=${d.S} T=${d.T} but op built for S=${S}, sp=${P} (T=${T})`);
    if (d.H % d.G !== 0) throw new Error(`rsa: heads H=${d.H} not divisible by kv heads G=${d.G}`);
  };

  /**
   * One ring pass of a [B, T, G, D] tensor: calls visit(block, j) for j = r, r−1, …, then forwards
   * the block to r+1 and waits (synchronous, as in the reference implementation).
   */
  const ringPass = async (x: Buf, visit: (blk: Buf, j: number) => void): Promise<void> => {
    let cur = scratch.copy(x);
    let nxt = scratch.alloc(x, x.length);
    for (let s = 0; s < P; s++) {
      visit(cur, (r - s + P) % P);
      if (s < P - 1) {
        // [B, T, G, D] block of rank j -sendRecv(sp: to r+1, from r−1)-> block of rank j−1
        await group.sendRecv(cur, next, nxt, prev);
        [cur, nxt] = [nxt, cur];
      }
    }
  };

  /** A[b,h,t,:] over all S keys: scores of block j (masked = −inf), scaled. sc: [B, H, T, S]. */
  const scoreBlock = (sc: Buf, q: Buf, kb: Buf, j: number, d: AttnDims): void => {
    const { B, H, G, D } = d;
    const rep = H / G;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const gh = Math.floor(h / rep);
        for (let t = 0; t < T; t++) {
          const qo = ((b * T + t) * H + h) * D;
          const so = ((b * H + h) * T + t) * S + j * T;
          for (let c = 0; c < T; c++) {
            const kp = j * T + c, qp = r * T + t;
            if ((d.causal && kp > qp) || (d.window !== undefined && kp < qp - d.window) || kp >= realS || qp >= realS || (d.docs !== undefined && d.docs[kp] !== d.docs[qp])) {
              sc[so + c] = -Infinity;
              continue;
            }
            const ko = ((b * T + c) * G + gh) * D;
            let dot = 0;
            for (let e = 0; e < D; e++) dot += q[qo + e]! * kb[ko + e]!;
            sc[so + c] = dot * d.scale;
          }
        }
      }
    }
  };

  return {
    name: 'rsa',
    layout,
    scratch,
    positions: layout.positions(r),
    async forward(o, i, d) {
      check(d);
      checkShapes('rsa', d, { ...o, ...i });
      scratch.begin();
      const { B, H, G, D } = d;
      const rep = H / G;
      const sc = scratch.alloc(i.q, B * H * T * S);
      await ringPass(i.k, (kb, j) => scoreBlock(sc, i.q, kb, j, d));
      // Local softmax over complete rows: A in place of the scores, lse saved.
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let t = 0; t < T; t++) {
            const so = ((b * H + h) * T + t) * S;
            let m = -Infinity;
            for (let c = 0; c < S; c++) if (sc[so + c]! > m) m = sc[so + c]!;
            let l = 0;
            for (let c = 0; c < S; c++) {
              const p = m === -Infinity ? 0 : Math.exp(sc[so + c]! - m);
              sc[so + c] = p;
              l += p;
            }
            if (l > 0) for (let c = 0; c < S; c++) sc[so + c] = sc[so + c]! / l;
            o.lse[(b * T + t) * H + h] = l > 0 ? m + Math.log(l) : -Infinity;
          }
        }
      }
      o.out.fill(0);
      await ringPass(i.v, (vb, j) => {
        for (let b = 0; b < B; b++) {
          for (let h = 0; h < H; h++) {
            const gh = Math.floor(h / rep);
            for (let t = 0; t < T; t++) {
              const oo = ((b * T + t) * H + h) * D;
              const so = ((b * H + h) * T + t) * S + j * T;
              for (let c = 0; c < T; c++) {
                const a = sc[so + c]!;
                if (a === 0) continue;
                const vo = ((b * T + c) * G + gh) * D;
                for (let e = 0; e < D; e++) o.out[oo + e] = o.out[oo + e]! + a * vb[vo + e]!;
              }
            }
          }
        }
      });
    },
    async backward(g, i, d) {
      check(d);
      checkShapes('rsa', d, { ...g, ...i });
      scratch.begin();
      const { B, H, G, D } = d;
      const rep = H / G;
      const sc = scratch.alloc(i.q, B * H * T * S);
      // Keys of every block as they pass, [B, S, G, D]: needed again for dQ.
      const kFull = scratch.alloc(i.k, B * S * G * D);
      await ringPass(i.k, (kb, j) => {
        scoreBlock(sc, i.q, kb, j, d);
        for (let b = 0; b < B; b++) kFull.set(kb.subarray(b * T * G * D, (b + 1) * T * G * D), (b * S + j * T) * G * D);
      });
      // A = exp(score − lse) with the saved (final) lse.
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let t = 0; t < T; t++) {
            const l = i.lse[(b * T + t) * H + h]!;
            const so = ((b * H + h) * T + t) * S;
            for (let c = 0; c < S; c++) sc[so + c] = l === -Infinity ? 0 : Math.exp(sc[so + c]! - l);
          }
        }
      }
      // [dK | dV] over the full sequence, my queries' contributions: [2][B, S, G, D].
      const dFull = scratch.alloc(g.dk, 2 * B * S * G * D).fill(0); // accumulated into; scratch is reused
      const dVo = B * S * G * D;
      const dA = scratch.alloc(i.q, B * H * T * S);
      await ringPass(i.v, (vb, j) => {
        for (let b = 0; b < B; b++) {
          for (let h = 0; h < H; h++) {
            const gh = Math.floor(h / rep);
            for (let t = 0; t < T; t++) {
              const qo = ((b * T + t) * H + h) * D;
              const so = ((b * H + h) * T + t) * S + j * T;
              for (let c = 0; c < T; c++) {
                const vo = ((b * T + c) * G + gh) * D;
                const fo = dVo + ((b * S + j * T + c) * G + gh) * D;
                const a = sc[so + c]!;
                let dot = 0;
                for (let e = 0; e < D; e++) {
                  dot += i.dOut[qo + e]! * vb[vo + e]!;
                  dFull[fo + e] = dFull[fo + e]! + a * i.dOut[qo + e]!;
                }
                dA[so + c] = dot;
              }
            }
          }
        }
      });
      // Softmax backward on complete rows, then dQ = τ dS K and dK = τ dSᵀ Q.
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const gh = Math.floor(h / rep);
          for (let t = 0; t < T; t++) {
            const so = ((b * H + h) * T + t) * S;
            const qo = ((b * T + t) * H + h) * D;
            let rs = 0;
            for (let c = 0; c < S; c++) rs += sc[so + c]! * dA[so + c]!;
            for (let c = 0; c < S; c++) {
              const a = sc[so + c]!;
              if (a === 0) continue;
              const ds = a * (dA[so + c]! - rs) * d.scale;
              const ko = ((b * S + c) * G + gh) * D;
              for (let e = 0; e < D; e++) {
                g.dq[qo + e] = g.dq[qo + e]! + ds * kFull[ko + e]!;
                dFull[ko + e] = dFull[ko + e]! + ds * i.q[qo + e]!;
              }
            }
          }
        }
      }
      // [2, B, S, G, D] dK|dV (my queries' part) -allReduce(sp, sum)-> all queries' part; keep block r.
      await group.allReduce(dFull, 'sum');
      const row = T * G * D;
      for (let b = 0; b < B; b++) {
        const src = (b * S + r * T) * G * D;
        for (let e = 0; e < row; e++) {
          g.dk[b * row + e] = g.dk[b * row + e]! + dFull[src + e]!;
          g.dv[b * row + e] = g.dv[b * row + e]! + dFull[dVo + src + e]!;
        }
      }
    },
  };
}
