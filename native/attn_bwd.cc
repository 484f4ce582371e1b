// Fused attention block backward (FlashAttention-2, algorithms.md §10.2) from the FINAL out/lse
// and delta = rowsum(dOut * out). Per (b, g) the query side of the H/G heads sharing the KV head
// is packed once: Q (pre-multiplied by c = scale*log2(e)), dO as [hg][Tq][Dp], -lse*log2(e) and
// delta as [hg][Tq]. Work items are key tiles of BC keys (each owns its dK, dV rows, so no races);
// per item, for every head of the group and query tile of BR rows (fully masked tiles skipped):
//   S  = (c Q) K^T,  P = 2^(S - lse*log2 e) masked,  dP = dO V^T,  dS' = P * (dP - delta)
//   dV += P^T dO,  dK' += dS'^T (c Q)  (tile accumulators [BC][Dp]; dk += ln2 * dK' once per item)
//   dQ' += dS' K                       (per-worker [hg][Tq][Dp] buffers; dq += scale * dQ' at the end)
// Five GEMMs of BR x BC x D per tile pair = 10 * Tq * Tk * D FLOPs per head.
#include "attn_common.h"

namespace SP_NS {

struct BwdCtx {
  const AttnArgs* a;
  Mask mask;
  int64_t b, g, hg, Dp, nQT;
  const float *Qp, *dOp, *nl, *dl;  // packed query side (see header)
  const PosStats* qst;              // [nQT]
  float* dQw;                       // [workers][hg][Tq][Dp]
};

static void bwd_item(void* vctx, int64_t jt, int worker) {
  const BwdCtx& c = *(const BwdCtx*)vctx;
  const AttnArgs& a = *c.a;
  const int64_t D = a.D, Dp = c.Dp, Tq = a.Tq, ks = a.G * a.D;
  const int64_t s0 = jt * BC, kcnt = imin(BC, a.Tk - s0);
  const PosStats kst = pos_stats(a.kPos + s0, kcnt);

  float* KT = sp_scratch(0, (size_t)(2 * D * BC));
  float* VT = KT + D * BC;
  float* Kr = sp_scratch(1, (size_t)(3 * BC * Dp));
  float* dK = Kr + BC * Dp;
  float* dV = dK + BC * Dp;
  float* S = sp_scratch(2, (size_t)(2 * BR * BC));
  float* dP = S + BR * BC;
  float* kpf = sp_scratch(3, (size_t)BC);

  const float* k0 = a.k + ((c.b * a.Tk + s0) * a.G + c.g) * D;
  const float* v0 = a.v + ((c.b * a.Tk + s0) * a.G + c.g) * D;
  bool packed = false;
  float* dQw = c.dQw + (int64_t)worker * c.hg * Tq * Dp;

  for (int64_t hh = 0; hh < c.hg; hh++) {
    for (int64_t it = 0; it < c.nQT; it++) {
      const int64_t t0 = it * BR, br = imin(BR, Tq - t0);
      const TileKind kind = classify(c.mask, c.qst[it], kst, kcnt < BC);
      if (kind == kSkip) continue;
      if (!packed) {  // first live tile: pack K^T, V^T, K rows; zero the accumulators
        packed = true;
        pack_kt(KT, k0, ks, kcnt, D, BC);
        pack_kt(VT, v0, ks, kcnt, D, BC);
        pack_rows(Kr, k0, ks, kcnt, BC, D, Dp);
        memset(dK, 0, sizeof(float) * 2 * BC * Dp);
        pos_to_float(kpf, a.kPos + s0, kcnt, BC);
      }
      const int64_t row0 = hh * Tq + t0;
      const float* Q = c.Qp + row0 * Dp;
      const float* dO = c.dOp + row0 * Dp;
      tile_block<false, false>(br, BC, D, Q, 1, Dp, KT, BC, S, BC, nullptr);    // S = (c Q) K^T
      tile_block<false, false>(br, BC, D, dO, 1, Dp, VT, BC, dP, BC, nullptr);  // dP = dO V^T
      for (int64_t r = 0; r < br; r++) {
        float* s = S + r * BC;
        float* dp = dP + r * BC;
        const vf nl = vset1(c.nl[row0 + r]), dl = vset1(c.dl[row0 + r]);
        if (kind == kFull) {
          for (int64_t j = 0; j < BC; j += W) {
            const vf p = vexp2_p<true>(vadd(vload(s + j), nl));  // lse = -inf row -> 0
            vstore(s + j, p);
            vstore(dp + j, vmul(p, vsub(vload(dp + j), dl)));
          }
        } else {
          vf lo, hi;
          mask_bounds(c.mask, a.qPos[t0 + r], &lo, &hi);
          const vf ninf = vset1(kNegInf);
          for (int64_t j = 0; j < BC; j += W) {
            const vf kp = vload(kpf + j);
            const vf x = vsel(mand(vge(kp, lo), vle(kp, hi)), vadd(vload(s + j), nl), ninf);
            const vf p = vexp2_p<true>(x);  // masked -> exactly 0
            vstore(s + j, p);
            vstore(dp + j, vmul(p, vsub(vload(dp + j), dl)));
          }
        }
      }
      // dV[c][:] += sum_r P[r][c] dO[r][:];  dK[c][:] += sum_r dS[r][c] Q[r][:]
      tile_block<true, false>(BC, Dp, br, S, BC, 1, dO, Dp, dV, Dp, nullptr);
      tile_block<true, false>(BC, Dp, br, dP, BC, 1, Q, Dp, dK, Dp, nullptr);
      // dQ[r][:] += sum_c dS[r][c] K[c][:]
      tile_block<true, false>(br, Dp, BC, dP, 1, BC, Kr, Dp, dQw + row0 * Dp, Dp, nullptr);
    }
  }
  if (!packed) return;
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
    for (int64_t g = 0; g < a.G; g++) {
      for (int64_t hh = 0; hh < hg; hh++) {
        const int64_t h = g * hg + hh, base = (b * Tq * H + h) * D;
        pack_rows(Qp + hh * Tq * Dp, a.q + base, H * D, Tq, Tq, D, Dp);
        for (int64_t i = 0; i < Tq * Dp; i += W) vstore(Qp + hh * Tq * Dp + i, vmul(vload(Qp + hh * Tq * Dp + i), sl2));
        pack_rows(dOp + hh * Tq * Dp, a.dOut + base, H * D, Tq, Tq, D, Dp);
        for (int64_t t = 0; t < Tq; t++) {
          const float l = a.lse[(b * Tq + t) * H + h];
          nl[hh * Tq + t] = l == kNegInf ? kNegInf : -l * kLog2e;
          dl[hh * Tq + t] = a.delta[(b * Tq + t) * H + h];
        }
      }
      memset(dQw, 0, sizeof(float) * (size_t)(workers * hg * Tq * Dp));
      BwdCtx c{&a, mask_of(a), b, g, hg, Dp, nQT, Qp, dOp, nl, dl, qst, dQw};
      sp_parallel_for(nKT, bwd_item, &c);
      for (int64_t hh = 0; hh < hg; hh++) {
        const int64_t h = g * hg + hh;
        for (int64_t t = 0; t < Tq; t++) {
          float* dq = a.dq + ((b * Tq + t) * H + h) * D;
          for (int w = 0; w < workers; w++) {
            const float* src = dQw + ((int64_t)w * hg * Tq + hh * Tq + t) * Dp;
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
