// Fused attention block backward (FlashAttention-2, algorithms.md §10.2) from the FINAL out/lse
// and delta = rowsum(dOut * out). Per (b, g) the query side of the hg heads sharing the KV head
// (those in the call's head range [h0, h1)) is packed once: Q (pre-multiplied by
// c = scale*log2(e)), dO as [hg][Tq][Dp], -lse*log2(e) and delta as [hg][Tq]. Work items are
// key tiles of BC keys (each owns its dK, dV rows, so no races);
// per item, for every head of the group and query tile of BR rows (fully masked tiles skipped):
//   S  = (c Q) K^T,  P = 2^(S - lse*log2 e) masked,  dP = dO V^T,  dS' = P * (dP - delta)
//   dV += P^T dO,  dK' += dS'^T (c Q)  (tile accumulators [BC][Dp], on AVX-512 at D = 17-32 also
//                                      transposed [Dp][BC]; dk += ln2 * dK' once per item)
//   dQ' += dS' K                       (per-worker [hg][Tq][Dp] buffers; dq += scale * dQ' at the end)
// Five GEMMs of BR x BC x D per tile pair = 10 * Tq * Tk * D FLOPs per head.
#include "attn_bwd_tiles.h"

namespace SP_NS {

#ifndef SP_BWD_Q_BYTES
#define SP_BWD_Q_BYTES (1 << 20)
#endif

struct BwdCtx {
  const AttnArgs* a;
  Mask mask;
  int64_t b, g, hg, Dp, nQT;        // hg: the heads of kv group g this call computes, packed
  int64_t it0, it1;                 // query tiles [it0, it1) visited by this pass
  const float *Qp, *dOp, *nl, *dl;  // packed query side (see header)
  const PosStats* qst;              // [nQT]
  float* dQw;                       // [workers][hg][Tq][Dp]
};

// Partial tile (the causal diagonal) where some row block's live keys end before the tile does;
// returns false, and does nothing, when none does (the caller then runs the whole masked tile).
// Each row block computes only up to its last live key (live_prefix), and every product skips what
// is exactly zero: key block kc (keys kc .. kc + kMR) sums only the rows from the first row block
// whose live prefix reaches past kc, since no row before it may attend any of those keys (key
// blocks with the same first row run as one taller product). The skipped terms are zeros, so the
// sums are unchanged. Out of line: inlined into bwd_item, it changed how the full-tile path
// compiled (15-20 % slower).
static __attribute__((noinline)) bool bwd_live(const BwdCtx& c, int64_t t0, int64_t br, int64_t row0, const float* Q,
                                               const float* dO, const float* KT, const float* VT, const float* Kr,
                                               float* dK, float* dV, float* S, float* dP, const float* kpf,
                                               const float* loF, const float* hiF, float* dQw) {
  const AttnArgs& a = *c.a;
  const int64_t D = a.D, Dp = c.Dp;
  int64_t kl[BR / kSR + 1];  // live keys per row block
  live_prefix(c.mask, a.qPos + t0, br, kSR, kpf, BC, W, kl);
  bool all = true;  // every row block live to the end: nothing to skip, the caller's whole tile
  for (int64_t r = 0; r < br; r += kSR) all = all && kl[r / kSR] == BC;
  if (all) return false;
  sdp_block_live(br, D, Q, dO, Dp, KT, VT, S, dP, c.nl + row0, c.dl + row0, kpf, loF, hiF, kl);
  // first row (a multiple of kSR) whose block's live prefix reaches past key kc
  const auto firstRow = [&](int64_t kc) {
    int64_t rs = 0;
    while (rs < br && kl[rs / kSR] <= kc) rs += kSR;
    return rs;
  };
  // consecutive key blocks with the same first row go in one product (taller tiles)
  for (int64_t kc = 0; kc < BC;) {
    const int64_t rs = firstRow(kc);
    int64_t ke = kc + kMR;
    while (ke < BC && firstRow(ke) == rs) ke += kMR;
    const int64_t m = imin(ke, BC) - kc;
    if (rs < br) {
      tile_block<true, false>(m, Dp, br - rs, S + rs * BC + kc, BC, 1, dO + rs * Dp, Dp, dV + kc * Dp, Dp, nullptr);
      tile_block<true, false>(m, Dp, br - rs, dP + rs * BC + kc, BC, 1, Q + rs * Dp, Dp, dK + kc * Dp, Dp, nullptr);
    }
    kc = ke;
  }
  for (int64_t r = 0; r < br; r += kSR) {
    const int64_t mr = imin(kSR, br - r);
    if (kl[r / kSR] > 0)
      tile_block<true, false>(mr, Dp, kl[r / kSR], dP + r * BC, 1, BC, Kr, Dp, dQw + (row0 + r) * Dp, Dp, nullptr);
  }
  return true;
}

static void bwd_item(void* vctx, int64_t jt, int worker) {
  const BwdCtx& c = *(const BwdCtx*)vctx;
  const AttnArgs& a = *c.a;
  const int64_t D = a.D, Dp = c.Dp, Tq = a.Tq, ks = a.G * a.D;
  const int64_t s0 = jt * BC, kcnt = imin(BC, a.Tk - s0);
  const PosStats kst = pos_stats(a.kPos + s0, kcnt);

  float* KT = sp_scratch(0, (size_t)(2 * D * BC));
  float* VT = KT + D * BC;
  float* Kr = sp_scratch(1, (size_t)(5 * BC * Dp));
  float* dK = Kr + BC * Dp;
  float* dV = dK + BC * Dp;
  // Head dims of 17-32 on AVX-512 (the reference model's D = 32): dK, dV rows are only 2 vectors
  // wide, so whole tiles accumulate them transposed, dK^T, dV^T [Dp][BC], where the product runs
  // on 6 x 64 register tiles (4 loads + 6 broadcasts per 24 FMAs) instead of 12 x 32 (2 + 12);
  // folded into dK, dV at the end. Backward 2.5-5 % faster at D = 32, N = 2-4K (bench/kernels/ab/ab.sh).
  float* dKT = dV + BC * Dp;  // [Dp][BC]
  float* dVT = dKT + BC * Dp;
  const bool tr = W == 16 && Dp == 2 * W;
  float* S = sp_scratch(2, (size_t)(2 * BR * BC));
  float* dP = S + BR * BC;
  float* kpf = sp_scratch(3, (size_t)(BC + 2 * BR));
  float* loF = kpf + BC;
  float* hiF = loF + BR;

  const float* k0 = a.k + ((c.b * a.Tk + s0) * a.G + c.g) * D;
  const float* v0 = a.v + ((c.b * a.Tk + s0) * a.G + c.g) * D;
  bool packed = false;
  float* dQw = c.dQw + (int64_t)worker * c.hg * Tq * Dp;

  for (int64_t hh = 0; hh < c.hg; hh++) {
    for (int64_t it = c.it0; it < c.it1; it++) {
      const int64_t t0 = it * BR, br = imin(BR, Tq - t0);
      const TileKind kind = classify(c.mask, c.qst[it], kst, kcnt < BC);
      if (kind == kSkip) continue;
      if (!packed) {  // first live tile: pack K^T, V^T, K rows; zero the accumulators
        packed = true;
        pack_kt(KT, k0, ks, kcnt, D, BC);
        pack_kt(VT, v0, ks, kcnt, D, BC);
        pack_rows(Kr, k0, ks, kcnt, BC, D, Dp);
        memset(dK, 0, sizeof(float) * 4 * BC * Dp);  // dK, dV, dK^T, dV^T
        pos_to_float(kpf, a.kPos + s0, kcnt, BC);
      }
      const int64_t row0 = hh * Tq + t0;
      const float* Q = c.Qp + row0 * Dp;
      const float* dO = c.dOp + row0 * Dp;
      // S = (c Q) K^T and dP = dO V^T in one pass, then P and dS' from registers
      if (kind == kFull) {
        sdp_block<false>(br, D, Q, dO, Dp, KT, VT, S, dP, c.nl + row0, c.dl + row0, kpf, nullptr, nullptr);
      } else {
        for (int64_t r = 0; r < br; r++) {
          vf lo, hi;
          mask_bounds(c.mask, a.qPos[t0 + r], &lo, &hi);
          vstore_n(loF + r, lo, 1);
          vstore_n(hiF + r, hi, 1);
        }
        if (bwd_live(c, t0, br, row0, Q, dO, KT, VT, Kr, dK, dV, S, dP, kpf, loF, hiF, dQw)) continue;
        sdp_block<true>(br, D, Q, dO, Dp, KT, VT, S, dP, c.nl + row0, c.dl + row0, kpf, loF, hiF);
      }
      // dV[c][:] += sum_r P[r][c] dO[r][:];  dK[c][:] += sum_r dS[r][c] Q[r][:]  (or transposed)
      if (tr) {
        tile_block<true, false>(Dp, BC, br, dO, Dp, 1, S, BC, dVT, BC, nullptr);
        tile_block<true, false>(Dp, BC, br, Q, Dp, 1, dP, BC, dKT, BC, nullptr);
      } else {
        tile_block<true, false>(BC, Dp, br, S, BC, 1, dO, Dp, dV, Dp, nullptr);
        tile_block<true, false>(BC, Dp, br, dP, BC, 1, Q, Dp, dK, Dp, nullptr);
      }
      // dQ[r][:] += sum_c dS[r][c] K[c][:]
      tile_block<true, false>(br, Dp, BC, dP, 1, BC, Kr, Dp, dQw + row0 * Dp, Dp, nullptr);
    }
  }
  if (!packed) return;
  if (tr)
    for (int64_t d = 0; d < Dp; d++)
      for (int64_t cc = 0; cc < BC; cc++) {
        dK[cc * Dp + d] += dKT[d * BC + cc];
        dV[cc * Dp + d] += dVT[d * BC + cc];
      }
  const vf ln2 = vset1(kLn2);
  for (int64_t cc = 0; cc < kcnt; cc++) {
    float* dk = a.dk + ((c.b * a.Tk + s0 + cc) * a.G + c.g) * D;
    float* dv = a.dv + ((c.b * a.Tk + s0 + cc) * a.G + c.g) * D;
    const float* sk = dK + cc * Dp;
    const float* sv = dV + cc * Dp;
    int64_t d = 0;
    for (; d < vfull(D); d += W) {
      vstore(dk + d, vfma(ln2, vload(sk + d), vload(dk + d)));
      vstore(dv + d, vadd(vload(dv + d), vload(sv + d)));
    }
    for (; d < D; d++) {
      dk[d] += kLn2 * sk[d];
      dv[d] += sv[d];
    }
  }
}

static void attnBackward(const AttnArgs& a) {
  if (a.Tq <= 0 || a.Tk <= 0 || a.H <= 0 || a.D <= 0) return;
  const int64_t D = a.D, Dp = round_up(D, W), H = a.H, Tq = a.Tq, hg = H / a.G;
  const int64_t nKT = (a.Tk + BC - 1) / BC, nQT = (Tq + BR - 1) / BR;
  const int workers = sp_threads();
  const int64_t qTiles = imax(1, (int64_t)SP_BWD_Q_BYTES / (hg * BR * Dp * 8));
  const vf sl2 = vset1(a.scale * kLog2e), sc = vset1(a.scale);
  float* Qp = sp_scratch(4, (size_t)(hg * Tq * Dp));
  float* dOp = sp_scratch(5, (size_t)(hg * Tq * Dp));
  const int64_t rowsF = round_up(2 * hg * Tq, 16);
  float* rows = sp_scratch(6, (size_t)(rowsF + nQT * (sizeof(PosStats) / sizeof(float) + 1)));
  float* nl = rows;
  float* dl = rows + hg * Tq;
  PosStats* qst = (PosStats*)(rows + rowsF);
  float* dQw = sp_scratch(7, (size_t)(workers * hg * Tq * Dp));
  for (int64_t it = 0; it < nQT; it++) qst[it] = pos_stats(a.qPos + it * BR, imin(BR, Tq - it * BR));

  for (int64_t b = 0; b < a.B; b++) {
    // the kv groups of heads [h0, h1), each with its nh heads in that range (from hlo)
    for (int64_t g = a.h0 / hg; g * hg < a.h1; g++) {
      const int64_t hlo = imax(a.h0, g * hg), nh = imin(a.h1, (g + 1) * hg) - hlo;
      if (nh <= 0) continue;  // an empty range
      for (int64_t hh = 0; hh < nh; hh++) {
        const int64_t h = hlo + hh, base = (b * Tq * H + h) * D;
        pack_rows(Qp + hh * Tq * Dp, a.q + base, H * D, Tq, Tq, D, Dp);
        for (int64_t i = 0; i < Tq * Dp; i += W) vstore(Qp + hh * Tq * Dp + i, vmul(vload(Qp + hh * Tq * Dp + i), sl2));
        pack_rows(dOp + hh * Tq * Dp, a.dOut + base, H * D, Tq, Tq, D, Dp);
        for (int64_t t = 0; t < Tq; t++) {
          const float l = a.lse[(b * Tq + t) * H + h];
          nl[hh * Tq + t] = l == kNegInf ? kNegInf : -l * kLog2e;
          dl[hh * Tq + t] = a.delta[(b * Tq + t) * H + h];
        }
      }
      memset(dQw, 0, sizeof(float) * (size_t)(workers * nh * Tq * Dp));
      // Query blocks of about SP_BWD_Q_BYTES (1 MiB) of packed Q and dO at a time: every key
      // tile then streams its queries from L2 instead of memory (dK/dV are flushed per block).
      for (int64_t i0 = 0; i0 < nQT; i0 += qTiles) {
        BwdCtx c{&a, mask_of(a), b, g, nh, Dp, nQT, i0, imin(nQT, i0 + qTiles), Qp, dOp, nl, dl, qst, dQw};
        sp_parallel_for(nKT, bwd_item, &c);
      }
      for (int64_t hh = 0; hh < nh; hh++) {
        const int64_t h = hlo + hh;
        for (int64_t t = 0; t < Tq; t++) {
          float* dq = a.dq + ((b * Tq + t) * H + h) * D;
          for (int w = 0; w < workers; w++) {
            const float* src = dQw + ((int64_t)w * nh * Tq + hh * Tq + t) * Dp;
            int64_t d = 0;
            for (; d < vfull(D); d += W) vstore(dq + d, vfma(sc, vload(src + d), vload(dq + d)));
            for (; d < D; d++) dq[d] += a.scale * src[d];
          }
        }
      }
    }
  }
}

void register_attn_bwd(KernelTable& t) { t.attnBackward = attnBackward; }

}  // namespace SP_NS
