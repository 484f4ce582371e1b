// Fused attention block forward (FlashAttention-2 style, algorithms.md §10.1) folding one key/value
// block into the running (out, lse) of the queries. Per (b, g): K^T and V of the whole block are
// packed once (O(Tk*D)); then work items (query head of the group, query tile of BR rows) run in
// parallel. Per item and key tile of BC keys:
//   S[BR][BC] = Q K^T (tile kernel), scale + mask on global positions, online softmax in place,
//   Acc[BR][Dp] = diag(alpha) Acc + P V (same tile kernel with a row rescale).
// The running state enters as m = lse_old, l = 1, Acc = out_old (exact, since out_old is already
// normalised by exp(lse_old)); rows that see no allowed key are not written back at all.
#include "attn_common.h"

namespace SP_NS {

struct FwdCtx {
  const AttnArgs* a;
  Mask mask;
  int64_t b, g, hg, Dp, nQT, nKT;
  const float* KT;    // [nKT][D][BC]
  const float* Vp;    // [nKT*BC][Dp]
  const float* kpf;   // [nKT*BC]
  const PosStats* kst;
};

static inline float row_max(const float* s) {
  vf m0 = vload(s), m1 = vload(s + W);
  for (int64_t j = 2 * W; j < BC; j += 2 * W) {
    m0 = vmax(m0, vload(s + j));
    m1 = vmax(m1, vload(s + j + W));
  }
  return vhmax(vmax(m0, m1));
}

static void fwd_item(void* vctx, int64_t item, int) {
  const FwdCtx& c = *(const FwdCtx*)vctx;
  const AttnArgs& a = *c.a;
  const int64_t D = a.D, Dp = c.Dp, H = a.H;
  const int64_t h = c.g * c.hg + item / c.nQT, t0 = (item % c.nQT) * BR;
  const int64_t br = imin(BR, a.Tq - t0);
  const int64_t qs = H * D;  // row stride of q/out within a batch
  const float* Q = a.q + ((c.b * a.Tq + t0) * H + h) * D;
  float* O = a.out + ((c.b * a.Tq + t0) * H + h) * D;
  float* L = a.lse + (c.b * a.Tq + t0) * H + h;
  const int32_t* qpos = a.qPos + t0;

  float* S = sp_scratch(0, (size_t)(BR * BC));
  float* Acc = sp_scratch(1, (size_t)(BR * Dp));
  float m[BR], l[BR], alpha[BR];
  bool touched[BR];
  bool started = false;  // Acc/m/l initialised lazily: fully skipped tiles cost nothing

  const PosStats qs_ = pos_stats(qpos, br);
  for (int64_t jt = 0; jt < c.nKT; jt++) {
    const int64_t kcnt = imin(BC, a.Tk - jt * BC);
    const TileKind kind = classify(c.mask, qs_, c.kst[jt], kcnt < BC);
    if (kind == kSkip) continue;
    if (!started) {
      started = true;
      for (int64_t r = 0; r < br; r++) {
        const float l0 = L[r * H];
        touched[r] = false;
        if (l0 == kNegInf) {
          m[r] = kNegInf;
          l[r] = 0.0f;
          memset(Acc + r * Dp, 0, sizeof(float) * Dp);
        } else {
          m[r] = l0;
          l[r] = 1.0f;
          memcpy(Acc + r * Dp, O + r * qs, sizeof(float) * D);
          for (int64_t d = D; d < Dp; d++) Acc[r * Dp + d] = 0.0f;
        }
      }
    }
    // S = Q K^T: A(k=d, r) = Q[r*qs + d], B = K^T tile [D][BC]
    tile_block<false, false>(br, BC, D, Q, 1, qs, c.KT + jt * D * BC, BC, S, BC, nullptr);
    const float* kpf = c.kpf + jt * BC;
    for (int64_t r = 0; r < br; r++) {
      float* s = S + r * BC;
      // Full tiles skip the scale/mask pass: max of the raw scores, scale folded into the exp.
      const bool fused = kind == kFull && a.scale > 0;
      const float mx = fused ? a.scale * row_max(s) : scale_mask_row(s, BC, a.scale, kpf, c.mask, qpos[r], true);
      const float mn = m[r] > mx ? m[r] : mx;
      if (mx == kNegInf) {  // nothing allowed in this tile for this row: P = 0, state unchanged
        memset(s, 0, sizeof(float) * BC);
        alpha[r] = 1.0f;
        continue;
      }
      touched[r] = true;
      alpha[r] = (m[r] == kNegInf) ? 0.0f : expf(m[r] - mn);
      const vf c1 = vset1(fused ? a.scale * kLog2e : kLog2e), c0 = vset1(-mn * kLog2e);
      vf sum = vzero();
      for (int64_t j = 0; j < BC; j += W) {
        vf p = vexp2(vfma(vload(s + j), c1, c0));  // masked -inf -> exactly 0
        vstore(s + j, p);
        sum = vadd(sum, p);
      }
      l[r] = l[r] * alpha[r] + vhsum(sum);
      m[r] = mn;
    }
    // Acc = diag(alpha) Acc + P V: A(k=c, r) = P[r*BC + c], B = V rows [BC][Dp]
    tile_block<true, true>(br, Dp, BC, S, 1, BC, c.Vp + jt * BC * Dp, Dp, Acc, Dp, alpha);
  }
  if (!started) return;
  for (int64_t r = 0; r < br; r++) {
    if (!touched[r]) continue;
    const float inv = 1.0f / l[r];
    L[r * H] = m[r] + logf(l[r]);
    float* o = O + r * qs;
    const float* ac = Acc + r * Dp;
    const vf vi = vset1(inv);
    int64_t d = 0;
    for (; d < vfull(D); d += W) vstore(o + d, vmul(vload(ac + d), vi));
    for (; d < D; d++) o[d] = ac[d] * inv;
  }
}

static void attnForward(const AttnArgs& a) {
  if (a.Tq <= 0 || a.Tk <= 0 || a.H <= 0 || a.D <= 0) return;
  const int64_t Dp = round_up(a.D, W), nKT = (a.Tk + BC - 1) / BC, nQT = (a.Tq + BR - 1) / BR;
  const int64_t hg = a.H / a.G, ks = a.G * a.D;
  float* KT = sp_scratch(4, (size_t)(nKT * a.D * BC));
  float* Vp = sp_scratch(5, (size_t)(nKT * BC * Dp));
  float* kpf = sp_scratch(6, (size_t)(nKT * BC));
  PosStats* kst = (PosStats*)sp_scratch(7, (size_t)(nKT * (sizeof(PosStats) / sizeof(float) + 1)));
  pos_to_float(kpf, a.kPos, a.Tk, nKT * BC);  // positions are per token, shared by every b
  for (int64_t jt = 0; jt < nKT; jt++) kst[jt] = pos_stats(a.kPos + jt * BC, imin(BC, a.Tk - jt * BC));
  for (int64_t b = 0; b < a.B; b++) {
    for (int64_t g = 0; g < a.G; g++) {
      const float* k0 = a.k + (b * a.Tk * a.G + g) * a.D;
      const float* v0 = a.v + (b * a.Tk * a.G + g) * a.D;
      for (int64_t jt = 0; jt < nKT; jt++) {
        const int64_t cnt = imin(BC, a.Tk - jt * BC);
        pack_kt(KT + jt * a.D * BC, k0 + jt * BC * ks, ks, cnt, a.D);
        pack_rows(Vp + jt * BC * Dp, v0 + jt * BC * ks, ks, cnt, BC, a.D, Dp);
      }
      FwdCtx c{&a, mask_of(a), b, g, hg, Dp, nQT, nKT, KT, Vp, kpf, kst};
      sp_parallel_for(hg * nQT, fwd_item, &c);
    }
  }
}

void register_attn_fwd(KernelTable& t) { t.attnForward = attnForward; }

}  // namespace SP_NS
