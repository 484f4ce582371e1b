// S/dP tiles of the fused attention backward (attn_bwd.cc): for a tile of query rows x BC keys,
// S = (c Q) K^T and dP = dO V^T, then P = 2^(S - lse*log2 e) (masked) and dS' = P (dP - delta),
// stored for the dV, dK and dQ products. Whole tiles (sdp_block) and partial tiles cut to each row
// block's live keys (sdp_block_live).
#pragma once
#include "attn_common.h"

namespace SP_NS {

// Rows per fused S/dP tile: two accumulator sets of kSR x 2 vectors (AVX2: 12 of 16 ymm).
#if defined(__AVX512F__)
constexpr int kSR = 6;
#elif defined(__AVX2__)
constexpr int kSR = 3;
#else
constexpr int kSR = 2;
#endif

// P = 2^(s + nl) of one score vector, 0 outside the row's allowed keys [lo, hi] when MASK (key
// positions kp). s + nl <= ~0 (lse >= every score of its row); an lse = -inf row or a masked key
// gives exactly 0.
template <bool MASK>
static inline vf prob_of(vf s, vf vn, const float* kp, float lo, float hi) {
  vf x = vadd(s, vn);
  if (MASK) {
    const vf k = vload(kp);
    x = vsel(mand(vge(k, vset1(lo)), vle(k, vset1(hi))), x, vset1(kNegInf));
  }
  return vexp2_p<false>(x);
}

// For MR query rows and NV*W keys: S = Q K^T and dP = dO V^T (K = D, Q/dO rows of stride Dp,
// K^T/V^T tiles of row stride BC) stay in registers; then P = 2^(S + nl) (masked to 0 outside
// [lo, hi] when MASK) and dS' = P (dP - dl) are stored (row stride BC).
template <int MR, int NV, bool MASK>
static inline void sdp_tile(int64_t D, const float* __restrict Q, const float* __restrict dO, int64_t Dp,
                            const float* __restrict KT, const float* __restrict VT, float* __restrict S,
                            float* __restrict dP, const float* nl, const float* dl, const float* kpf,
                            const float* lo, const float* hi) {
  // dP starts at -dl: dP - dl comes out of the loop directly. (S does not start at nl: with a large
  // |lse| every step would round at that magnitude instead of once.)
  vf s[MR][NV], p[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) {
      s[r][j] = vzero();
      p[r][j] = vset1(-dl[r]);
    }
  // one k step of each sum at a time (both sets stay in registers, K^T and V^T rows are read once)
#pragma GCC unroll 2
  for (int64_t k = 0; k < D; k++) {
    tile_acc<MR, NV>(s, 1, Q + k, 1, Dp, KT + k * BC, BC);
    tile_acc<MR, NV>(p, 1, dO + k, 1, Dp, VT + k * BC, BC);
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    const vf vn = vset1(nl[r]);
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) {
      const vf pr = prob_of<MASK>(s[r][j], vn, kpf + j * W, MASK ? lo[r] : 0.0f, MASK ? hi[r] : 0.0f);
      vstore(S + r * BC + j * W, pr);
      vstore(dP + r * BC + j * W, vmul(pr, p[r][j]));
    }
  }
}

// AVX-512 (BC = 4W = 64 keys): the same in two passes over MR rows and all 64 keys. First S = Q K^T
// with MR x 4 accumulators (4 K^T loads and MR broadcasts per k, where the fused tile above needs
// 4 loads and 12 broadcasts per 24 FMAs), P = 2^(S + nl) stored; then dP = dO V^T - dl the same
// way, and dS' = P (dP - dl) from the stored P. Same operations per element in the same order,
// so the same bits; the whole backward ran 1-10 % faster (bench/kernels/ab/ab.sh, D = 32-128;
// the model's 8-head D = 32 shape about 5 %).
template <int MR, bool MASK>
static inline void sdp_tile4(int64_t D, const float* __restrict Q, const float* __restrict dO, int64_t Dp,
                             const float* __restrict KT, const float* __restrict VT, float* __restrict S,
                             float* __restrict dP, const float* nl, const float* dl, const float* kpf,
                             const float* lo, const float* hi) {
  constexpr int NV = 4;
  vf acc[MR][NV];
  tile_acc0<MR, NV>(acc, D, Q, 1, Dp, KT, BC);
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    const vf vn = vset1(nl[r]);
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++)
      vstore(S + r * BC + j * W, prob_of<MASK>(acc[r][j], vn, kpf + j * W, MASK ? lo[r] : 0.0f, MASK ? hi[r] : 0.0f));
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) acc[r][j] = vset1(-dl[r]);
  tile_acc<MR, NV>(acc, D, dO, 1, Dp, VT, BC);
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) vstore(dP + r * BC + j * W, vmul(vload(S + r * BC + j * W), acc[r][j]));
}

// sdp_tile4 for any row count mr in [1, 6].
template <bool MASK>
static inline void sdp_rows4(int mr, int64_t D, const float* Q, const float* dO, int64_t Dp, const float* KT,
                             const float* VT, float* S, float* dP, const float* nl, const float* dl, const float* kpf,
                             const float* lo, const float* hi) {
  switch (mr) {
#define SP_SDP4_CASE(n) \
  case n:               \
    sdp_tile4<n, MASK>(D, Q, dO, Dp, KT, VT, S, dP, nl, dl, kpf, lo, hi); \
    break;
    SP_SDP4_CASE(1) SP_SDP4_CASE(2) SP_SDP4_CASE(3) SP_SDP4_CASE(4) SP_SDP4_CASE(5) SP_SDP4_CASE(6)
#undef SP_SDP4_CASE
    default: break;
  }
}

template <int NV, bool MASK>
static inline void sdp_rows(int mr, int64_t D, const float* Q, const float* dO, int64_t Dp, const float* KT,
                            const float* VT, float* S, float* dP, const float* nl, const float* dl, const float* kpf,
                            const float* lo, const float* hi) {
  switch (mr) {
#define SP_SDP_CASE(n) \
  case n:              \
    if (n <= kSR) sdp_tile<(n <= kSR ? n : 1), NV, MASK>(D, Q, dO, Dp, KT, VT, S, dP, nl, dl, kpf, lo, hi); \
    break;
    SP_SDP_CASE(1) SP_SDP_CASE(2) SP_SDP_CASE(3) SP_SDP_CASE(4) SP_SDP_CASE(5) SP_SDP_CASE(6)
#undef SP_SDP_CASE
    default: break;
  }
}

// S/dP/P/dS' for a tile of br query rows x BC keys: AVX-512 two-pass blocks of 6 rows x 64 keys
// (sdp_tile4), otherwise fused blocks of kSR rows x 2 vectors, then 1.
template <bool MASK>
static void sdp_block(int64_t br, int64_t D, const float* Q, const float* dO, int64_t Dp, const float* KT,
                      const float* VT, float* S, float* dP, const float* nl, const float* dl, const float* kpf,
                      const float* lo, const float* hi) {
#if defined(__AVX512F__)
  if (BC == 4 * W) {
    int64_t r = 0;
    for (; r + 6 <= br; r += 6)
      sdp_tile4<6, MASK>(D, Q + r * Dp, dO + r * Dp, Dp, KT, VT, S + r * BC, dP + r * BC, nl + r, dl + r, kpf,
                         MASK ? lo + r : nullptr, MASK ? hi + r : nullptr);
    if (r < br) sdp_rows4<MASK>((int)(br - r), D, Q + r * Dp, dO + r * Dp, Dp, KT, VT, S + r * BC, dP + r * BC, nl + r,
                                dl + r, kpf, MASK ? lo + r : nullptr, MASK ? hi + r : nullptr);
    return;
  }
#endif
  for (int64_t c = 0; c < BC; c += 2 * W) {
    const bool two = c + 2 * W <= BC;
    for (int64_t r = 0; r < br; r += kSR) {
      const int mr = (int)imin(kSR, br - r);
      const float *q = Q + r * Dp, *o = dO + r * Dp, *n = nl + r, *d = dl + r;
      const float *l = MASK ? lo + r : nullptr, *h = MASK ? hi + r : nullptr;
      float *sr = S + r * BC + c, *pr = dP + r * BC + c;
      if (two) {
        if (mr == kSR) sdp_tile<kSR, 2, MASK>(D, q, o, Dp, KT + c, VT + c, sr, pr, n, d, kpf + c, l, h);
        else sdp_rows<2, MASK>(mr, D, q, o, Dp, KT + c, VT + c, sr, pr, n, d, kpf + c, l, h);
      } else {
        sdp_rows<1, MASK>(mr, D, q, o, Dp, KT + c, VT + c, sr, pr, n, d, kpf + c, l, h);
      }
    }
  }
}

// Partial tile (masked): row block b (rows b*kSR ..) computes only its first kl[b] keys (a
// multiple of W, live_prefix); its P and dS' past them are zero, and written as zeros so that the
// dV/dK products below may read any row they do not skip.
static void sdp_block_live(int64_t br, int64_t D, const float* Q, const float* dO, int64_t Dp, const float* KT,
                           const float* VT, float* S, float* dP, const float* nl, const float* dl, const float* kpf,
                           const float* lo, const float* hi, const int64_t* kl) {
  for (int64_t r = 0; r < br; r += kSR) {
    const int mr = (int)imin(kSR, br - r);
    const int64_t live = kl[r / kSR];
    const float *q = Q + r * Dp, *o = dO + r * Dp, *n = nl + r, *d = dl + r, *l = lo + r, *h = hi + r;
#if defined(__AVX512F__)
    if (BC == 4 * W && live == BC) {  // live to the end: the two-pass block
      sdp_rows4<true>(mr, D, q, o, Dp, KT, VT, S + r * BC, dP + r * BC, n, d, kpf, l, h);
      continue;
    }
#endif
    int64_t c = 0;
    for (; c + 2 * W <= live; c += 2 * W) {
      float *sr = S + r * BC + c, *pr = dP + r * BC + c;
      if (mr == kSR) sdp_tile<kSR, 2, true>(D, q, o, Dp, KT + c, VT + c, sr, pr, n, d, kpf + c, l, h);
      else sdp_rows<2, true>(mr, D, q, o, Dp, KT + c, VT + c, sr, pr, n, d, kpf + c, l, h);
    }
    if (c < live) sdp_rows<1, true>(mr, D, q, o, Dp, KT + c, VT + c, S + r * BC + c, dP + r * BC + c, n, d, kpf + c, l, h);
    for (int64_t rr = r; rr < r + mr && live < BC; rr++) {
      memset(S + rr * BC + live, 0, sizeof(float) * (BC - live));
      memset(dP + rr * BC + live, 0, sizeof(float) * (BC - live));
    }
  }
}

}  // namespace SP_NS
