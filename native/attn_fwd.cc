// Fused attention block forward (FlashAttention-2 style, algorithms.md §10.1) folding one key/value
// block into the running (out, lse) of the queries. Per (b, g): K^T and V of the whole block are
// packed once (O(Tk*D)); then work items (query head of the group, query tile of BRF rows) run in
// parallel. Per item and key tile of BCF keys:
//   S[BRF][BCF] = (scale*log2e Q) K^T (tile kernel), mask on global positions, online softmax (base 2),
//   Acc[BRF][Dp] = diag(alpha) Acc + P V (same tile kernel with a row rescale).
// The running state enters as m = lse_old, l = 1, Acc = out_old (exact, since out_old is already
// normalised by exp(lse_old)); rows that see no allowed key are not written back at all.
#include "attn_common.h"

namespace SP_NS {

// Query rows per forward tile (the backward has its own BR): every key/value tile is streamed
// through the cache once per query tile, so taller tiles halve that traffic, which matters once
// K and V outgrow L2/L3 (measured on Zen 3: 96 beats 48 by 1-3 %, by 9 % at N=16K D=128).
// Multiple of kMR and of W on every ISA.
#ifndef SP_BRF
#define SP_BRF 96
#endif
constexpr int64_t BRF = SP_BRF;
// Keys per forward tile: longer than the backward's BC so that the per-row work of the online
// softmax (max, rescale factor, row sum) is spread over more keys, short enough that the K^T and V
// tiles (2 x 64 x D floats) stay near L1 and causal diagonal tiles waste little (measured on Zen 3:
// 64 beats 128 by 1-2 % at N=4096 and by 5-9 % at N=1024 causal). Multiple of 2W on every ISA.
// AVX-512: 128 (two 4-vector blocks per row; the per-row softmax work is spread over twice the
// keys), +2-3 % on Ice Lake.
#ifndef SP_BCF
#if defined(__AVX512F__)
#define SP_BCF 128
#else
#define SP_BCF 64
#endif
#endif
constexpr int64_t BCF = SP_BCF;
#ifndef SP_FWD_KV_BYTES
#define SP_FWD_KV_BYTES (1 << 19)
#endif

struct FwdCtx {
  const AttnArgs* a;
  Mask mask;
  int64_t b, g, h0, Dp, nQT, nKT;  // items: heads h0, h0 + 1, .. of kv group g, nQT query tiles each
  int64_t jt0, jt1;   // key tiles [jt0, jt1) folded by this pass
  const float* KT;    // [nKT][D][BCF]
  const float* Vp;    // [nKT*BCF][Dp]
  const float* kpf;   // [nKT*BCF]
  const PosStats* kst;
};

// S[r][0 .. NV*W) = sum_d Q[r][d] K^T[d][..] for MR query rows (K = D, row strides D and BCF) and
// the running per-row vector max mv[r][0 .. W) updated from the registers (no separate max pass).
// MASK: scores of keys outside the row's allowed interval [lo[r], hi[r]] (key positions kpf, as
// floats, -1 = padding) become -inf in the registers, so partial tiles need no second pass.
template <int MR, int NV, bool MASK>
static inline void qk_tile(int64_t D, const float* __restrict Q, const float* __restrict KT, float* __restrict S,
                           float* __restrict mv, const float* kpf, const float* lo, const float* hi) {
  vf acc[MR][NV];
  tile_acc0<MR, NV>(acc, D, Q, 1, D, KT, BCF);
#pragma GCC unroll 16
  for (int r = 0; r < MR; r++) {
    vf m = vload(mv + r * W);
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) {
      vf x = acc[r][j];
      if (MASK) {
        const vf kp = vload(kpf + j * W);
        x = vsel(mand(vge(kp, vset1(lo[r])), vle(kp, vset1(hi[r]))), x, vset1(kNegInf));
      }
      vstore(S + r * BCF + j * W, x);
      m = vmax(m, x);
    }
    vstore(mv + r * W, m);
  }
}

// Whole score tile of br rows x BCF keys (BCF is a multiple of 2W on every ISA); row block b
// (rows b*kMR ..) only computes its first kl[b] keys (the rest is masked for all its rows).
template <bool MASK>
static void qk_block(int64_t br, int64_t D, const float* Q, const float* KT, float* S, float* mv, const int64_t* kl,
                     const float* kpf, const float* lo, const float* hi) {
  for (int64_t r = 0; r < br; r++) vstore(mv + r * W, vset1(kNegInf));
  for (int64_t r = 0; r < br; r += kMR) {
    const int mr = (int)imin(kMR, br - r);
    const float* q = Q + r * D;
    float* m = mv + r * W;
    const float *l = lo + r, *h = hi + r;
    int64_t c = 0;
    // 4-vector key blocks where the ISA has the registers (kNVmax == 4), then 2-vector ones
    for (; kNVmax == 4 && c + 4 * W <= kl[r / kMR]; c += 4 * W) {
      switch (mr) {
#define SP_QK4_CASE(n) \
  case n:              \
    if (n <= kMR) qk_tile<(n <= kMR ? n : 1), (kNVmax == 4 ? 4 : 2), MASK>(D, q, KT + c, S + r * BCF + c, m, kpf + c, l, h); \
    break;
        SP_QK4_CASE(1) SP_QK4_CASE(2) SP_QK4_CASE(3) SP_QK4_CASE(4) SP_QK4_CASE(5) SP_QK4_CASE(6)
        SP_QK4_CASE(7) SP_QK4_CASE(8)
#undef SP_QK4_CASE
        default: break;
      }
    }
    for (; c < kl[r / kMR]; c += 2 * W) {
      float* sr = S + r * BCF + c;
      switch (mr) {
#define SP_QK_CASE(n) \
  case n:             \
    if (n <= kMR) qk_tile<(n <= kMR ? n : 1), 2, MASK>(D, q, KT + c, sr, m, kpf + c, l, h); \
    break;
        SP_QK_CASE(1) SP_QK_CASE(2) SP_QK_CASE(3) SP_QK_CASE(4) SP_QK_CASE(5) SP_QK_CASE(6)
        SP_QK_CASE(7) SP_QK_CASE(8) SP_QK_CASE(9) SP_QK_CASE(10) SP_QK_CASE(11) SP_QK_CASE(12)
#undef SP_QK_CASE
        default: break;
      }
    }
  }
}

// Scores are kept in log2 units: the query tile is packed pre-multiplied by scale*log2(e), so
// P = 2^(S - m) needs one subtraction per score, and m, the running max, is in log2 units too.
static void fwd_item(void* vctx, int64_t item, int) {
  const FwdCtx& c = *(const FwdCtx*)vctx;
  const AttnArgs& a = *c.a;
  const int64_t D = a.D, Dp = c.Dp, H = a.H;
  const int64_t h = c.h0 + item / c.nQT, t0 = (item % c.nQT) * BRF;
  const int64_t br = imin(BRF, a.Tq - t0);
  const int64_t qs = H * D;  // row stride of q/out within a batch
  const float* Q = a.q + ((c.b * a.Tq + t0) * H + h) * D;
  float* O = a.out + ((c.b * a.Tq + t0) * H + h) * D;
  float* L = a.lse + (c.b * a.Tq + t0) * H + h;
  const int32_t* qpos = a.qPos + t0;

  float* S = sp_scratch(0, (size_t)(BRF * BCF));
  float* Acc = sp_scratch(1, (size_t)(BRF * Dp));
  float* Qs = sp_scratch(2, (size_t)(BRF * D));
  float* Mv = sp_scratch(3, (size_t)(2 * BRF * W));
  float* Lv = Mv + BRF * W;
  alignas(64) float m[BRF], l[BRF], mx[BRF], alpha[BRF];
  alignas(64) float rowLo[BRF], rowHi[BRF];  // each query's allowed key interval (partial tiles)
  int64_t kl[BRF / kMR + 1];  // live keys per row block of the current tile (live_prefix)
  bool touched[BRF];
  bool started = false;  // Acc/m/l initialised lazily: fully skipped tiles cost nothing

  const PosStats qs_ = pos_stats(qpos, br);
  for (int64_t jt = c.jt0; jt < c.jt1; jt++) {
    const int64_t kcnt = imin(BCF, a.Tk - jt * BCF);
    const TileKind kind = classify(c.mask, qs_, c.kst[jt], kcnt < BCF);
    if (kind == kSkip) continue;
    if (!started) {
      started = true;
      for (int64_t r = 0; r < br; r++) {
        vf lo, hi;
        mask_bounds(c.mask, qpos[r], &lo, &hi);
        vstore_n(rowLo + r, lo, 1);
        vstore_n(rowHi + r, hi, 1);
      }
      const float qsc = a.scale * kLog2e;
      for (int64_t r = 0; r < br; r++)
        for (int64_t d = 0; d < D; d++) Qs[r * D + d] = Q[r * qs + d] * qsc;
      for (int64_t r = 0; r < BRF; r++) {
        const float l0 = r < br ? L[r * H] : kNegInf;
        touched[r] = false;
        mx[r] = kNegInf;
        if (l0 == kNegInf) {
          m[r] = kNegInf;
          l[r] = 0.0f;
          vstore(Lv + r * W, vzero());
          if (r < br) memset(Acc + r * Dp, 0, sizeof(float) * Dp);
        } else {
          m[r] = l0 * kLog2e;
          l[r] = 1.0f;
          vstore(Lv + r * W, vzero());
          Lv[r * W] = 1.0f;
          memcpy(Acc + r * Dp, O + r * qs, sizeof(float) * D);
          for (int64_t d = D; d < Dp; d++) Acc[r * Dp + d] = 0.0f;
        }
      }
    }
    const float* kpf = c.kpf + jt * BCF;
    if (kind == kFull) {
      for (int64_t b = 0; b * kMR < br; b++) kl[b] = BCF;
    } else {
      live_prefix(c.mask, qpos, br, kMR, kpf, BCF, 2 * W, kl);
    }
    // S = (c Q) K^T: A(k=d, r) = Qs[r*D + d], B = K^T tile [D][BCF]
    // (masked to -inf in the registers on partial tiles)
    if (kind == kFull) qk_block<false>(br, D, Qs, c.KT + jt * D * BCF, S, Mv, kl, kpf, rowLo, rowHi);
    else qk_block<true>(br, D, Qs, c.KT + jt * D * BCF, S, Mv, kl, kpf, rowLo, rowHi);
    for (int64_t r = 0; r < br; r++) mx[r] = vhmax(vload(Mv + r * W));
    // New max and rescale factor of every row at once. A row with nothing allowed in this tile
    // keeps m (alpha = 1, P = 0); a row with nothing allowed so far has Acc = 0, l = 0 and gets
    // alpha = 0 (2^NaN and 2^-inf are 0 in vexp2).
    for (int64_t r = 0; r < BRF; r += W) {
      const vf mo = vload(m + r), mn = vmax(mo, vload(mx + r));
      vstore(alpha + r, vexp2(vsub(mo, mn)));
      vstore(m + r, mn);
    }
    for (int64_t r = 0; r < br; r++) {
      float* s = S + r * BCF;
      const vf mv = vset1(m[r]);
      vf s0 = vzero(), s1 = vzero();
      for (int64_t j = 0; j < kl[r / kMR]; j += 2 * W) {
        const vf p0 = vexp2_p<false>(vsub(vload(s + j), mv)), p1 = vexp2_p<false>(vsub(vload(s + j + W), mv));
        vstore(s + j, p0);
        vstore(s + j + W, p1);
        s0 = vadd(s0, p0);
        s1 = vadd(s1, p1);
      }
      float* lv = Lv + r * W;  // row sum kept as a vector: no horizontal sum per tile
      vstore(lv, vfma(vload(lv), vset1(alpha[r]), vadd(s0, s1)));
      touched[r] = touched[r] || mx[r] != kNegInf;
    }
    // Acc = diag(alpha) Acc + P V: A(k=c, r) = P[r*BCF + c], B = V rows [BCF][Dp]; a row block
    // sums over its live keys only (its rescale still applies when it has none).
    if (kind == kFull) {
      tile_block<true, true>(br, Dp, BCF, S, 1, BCF, c.Vp + jt * BCF * Dp, Dp, Acc, Dp, alpha);
    } else {
      for (int64_t r = 0; r < br; r += kMR)
        tile_block<true, true>(imin(kMR, br - r), Dp, kl[r / kMR], S + r * BCF, 1, BCF, c.Vp + jt * BCF * Dp, Dp,
                               Acc + r * Dp, Dp, alpha + r);
    }
  }
  if (!started) return;
  for (int64_t r = 0; r < br; r++) {
    if (!touched[r]) continue;
    l[r] = vhsum(vload(Lv + r * W));
    const float inv = 1.0f / l[r];
    L[r * H] = m[r] * kLn2 + logf(l[r]);
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
  const int64_t Dp = round_up(a.D, W), nKT = (a.Tk + BCF - 1) / BCF, nQT = (a.Tq + BRF - 1) / BRF;
  const int64_t hg = a.H / a.G, ks = a.G * a.D;
  const int64_t kvTiles = imax(1, (int64_t)SP_FWD_KV_BYTES / (BCF * (a.D + Dp) * 4));
  float* KT = sp_scratch(4, (size_t)(nKT * a.D * BCF));
  float* Vp = sp_scratch(5, (size_t)(nKT * BCF * Dp));
  float* kpf = sp_scratch(6, (size_t)(nKT * BCF));
  PosStats* kst = (PosStats*)sp_scratch(7, (size_t)(nKT * (sizeof(PosStats) / sizeof(float) + 1)));
  pos_to_float(kpf, a.kPos, a.Tk, nKT * BCF);  // positions are per token, shared by every b
  for (int64_t jt = 0; jt < nKT; jt++) kst[jt] = pos_stats(a.kPos + jt * BCF, imin(BCF, a.Tk - jt * BCF));
  for (int64_t b = 0; b < a.B; b++) {
    // the kv groups of heads [h0, h1), each with its heads in that range
    for (int64_t g = a.h0 / hg; g * hg < a.h1; g++) {
      const int64_t hlo = imax(a.h0, g * hg), nh = imin(a.h1, (g + 1) * hg) - hlo;
      if (nh <= 0) continue;  // an empty range
      const float* k0 = a.k + (b * a.Tk * a.G + g) * a.D;
      const float* v0 = a.v + (b * a.Tk * a.G + g) * a.D;
      for (int64_t jt = 0; jt < nKT; jt++) {
        const int64_t cnt = imin(BCF, a.Tk - jt * BCF);
        pack_kt(KT + jt * a.D * BCF, k0 + jt * BCF * ks, ks, cnt, a.D, BCF);
        pack_rows(Vp + jt * BCF * Dp, v0 + jt * BCF * ks, ks, cnt, BCF, a.D, Dp);
      }
      // Key blocks of about SP_FWD_KV_BYTES (512 KiB) of packed K^T and V at a time, each folded into the
      // running (out, lse) of every query tile: each query tile streams K/V from L2 instead of
      // from memory once the whole block outgrows it (Ice Lake, N=16K, D=64: +5-9 %).
      for (int64_t j0 = 0; j0 < nKT; j0 += kvTiles) {
        FwdCtx c{&a, mask_of(a), b, g, hlo, Dp, nQT, nKT, j0, imin(nKT, j0 + kvTiles), KT, Vp, kpf, kst};
        sp_parallel_for(nh * nQT, fwd_item, &c);
      }
    }
  }
}

void register_attn_fwd(KernelTable& t) { t.attnForward = attnForward; }

}  // namespace SP_NS
