// Shared pieces of the fused attention kernels: tile sizes, the mask rule on GLOBAL positions
// (src/kernels/types.ts AttnMask), per-tile classification so fully masked tiles are skipped and
// fully allowed tiles need no per-element mask, and K/V packing.
#pragma once
#include "api.h"
#include "tile.h"

namespace SP_NS {

// AVX-512 (Ice Lake): 64 x 64 backward tiles beat 48 x 48 by 4-7 % (the 4-vector 6 x 64 tiles
// run whole, and S/dP keep 4 full vectors per row).
#if defined(__AVX512F__)
#ifndef SP_BR
#define SP_BR 64
#endif
#ifndef SP_BC
#define SP_BC 64
#endif
#else
#ifndef SP_BR
#define SP_BR 48
#endif
#ifndef SP_BC
#define SP_BC 48
#endif
#endif
constexpr int64_t BR = SP_BR;  // query rows per tile (best a multiple of kMR; remainders use row tiles)
constexpr int64_t BC = SP_BC;  // keys per backward tile (multiple of W; best of 2W and kMR)
static const float kNegInf = -__builtin_inff();

// 2^x for softmax probabilities: degree-5 polynomial (max relative error 2e-7 in float), same
// rounding trick and exact zero for x <= -127 (-inf, and NaN from -inf - -inf) as vexp2. HI: also
// clamp above at 127 (the forward's x = s - rowmax is never positive, so it skips that).
#if defined(__AVX512F__) && defined(__AVX512DQ__)
// AVX-512: 8 vector ops instead of 11. f = x - floor(x) in [0, 1) in one vreduceps, and
// vscalefps multiplies by 2^floor(x) (no integer exponent assembly). Polynomial refitted for
// [0, 1) with p(0) = 1 (so a row's maximum gets exactly 1): max relative error 1.6e-7 in float.
// Lanes with x < -126 (masked -inf, NaN from -inf - -inf, and values whose result would be
// subnormal) are zeroed by the write mask instead of computed: an underflowing vscalefps takes a
// microcode assist on Intel (measured: causal N=1024 forward 9 % slower when -inf was clamped to
// -200 and scaled down to 0).
template <bool HI>
static inline vf vexp2_p(vf x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, vset1(-126.0f), _CMP_GE_OQ);
  if (HI) x = vmin(x, vset1(127.0f));
  const vf f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  vf p = vset1(1.8671263242e-03f);
  p = vfma(p, f, vset1(9.0170381591e-03f));
  p = vfma(p, f, vset1(5.5799908936e-02f));
  p = vfma(p, f, vset1(2.4016445875e-01f));
  p = vfma(p, f, vset1(6.9315129519e-01f));
  p = vfma(p, f, vset1(1.0f));
  return _mm512_maskz_scalef_ps(live, p, x);
}
#else
template <bool HI>
static inline vf vexp2_p(vf x) {
  x = vmax(x, vset1(-127.0f));
  if (HI) x = vmin(x, vset1(127.0f));
  const vf magic = vset1(12583039.0f);  // 1.5 * 2^23 + 127
  const vf t = vadd(x, magic);
  const vf f = vsub(x, vsub(t, magic));
  vf p = vset1(1.3264727214e-03f);
  p = vfma(p, f, vset1(9.6715128125e-03f));
  p = vfma(p, f, vset1(5.5507337448e-02f));
  p = vfma(p, f, vset1(2.4022242083e-01f));
  p = vfma(p, f, vset1(6.9314697760e-01f));
  p = vfma(p, f, vset1(1.0f));
  return vmul(p, vshl23(t));
}
#endif

// Allowed keys for a query at position qp form the interval [lo(qp), hi(qp)] (empty for qp < 0);
// lo and hi are non-decreasing in qp. Positions are < 2^24 (checked by the glue), so clamping
// the bounds to [-1, 2^24 + 1] keeps them exact as floats.
struct Mask {
  bool causal, hasLeft, hasRight;
  int64_t left, right;
  int64_t lo(int64_t qp) const { return hasLeft ? imax(0, qp - left) : 0; }
  int64_t hi(int64_t qp) const {
    int64_t h = causal ? qp : ((int64_t)1 << 25);
    if (hasRight) h = imin(h, qp + right);
    return h;
  }
  static float clampf(int64_t v) { return (float)imin(imax(v, -1), ((int64_t)1 << 24) + 1); }
};
static inline Mask mask_of(const AttnArgs& a) { return Mask{a.causal, a.hasLeft, a.hasRight, a.left, a.right}; }

// min/max over the non-negative positions of a tile; n = how many; pad = any negative.
struct PosStats {
  int64_t mn, mx, n;
  bool pad;
};
static inline PosStats pos_stats(const int32_t* pos, int64_t cnt) {
  PosStats s{INT64_MAX, -1, 0, false};
  for (int64_t i = 0; i < cnt; i++) {
    const int64_t p = pos[i];
    if (p < 0) { s.pad = true; continue; }
    s.n++;
    s.mn = imin(s.mn, p);
    s.mx = imax(s.mx, p);
  }
  return s;
}

enum TileKind { kSkip, kFull, kPartial };
// Conservative: kSkip only when no pair can be allowed, kFull only when every pair is allowed.
static inline TileKind classify(const Mask& m, const PosStats& q, const PosStats& k, bool kPadCols) {
  if (q.n == 0 || k.n == 0) return kSkip;
  if (k.mx < m.lo(q.mn) || k.mn > m.hi(q.mx)) return kSkip;
  if (!q.pad && !k.pad && !kPadCols && k.mn >= m.lo(q.mx) && k.mx <= m.hi(q.mn)) return kFull;
  return kPartial;
}

// Allowed-key interval of a query as floats for vector compares; a padded query (qp < 0) attends
// nothing: the empty interval [1, -1].
static inline void mask_bounds(const Mask& m, int64_t qp, vf* lo, vf* hi) {
  *lo = vset1(qp < 0 ? 1.0f : Mask::clampf(m.lo(qp)));
  *hi = vset1(qp < 0 ? -1.0f : Mask::clampf(m.hi(qp)));
}

// Keys of a partial tile that some row of each row block may attend: for the row blocks of rb
// rows (rows b*rb .. b*rb + rb of the br), kl[b] = the shortest prefix (a multiple of `align`,
// at most `cols`) of the tile's keys (positions kpf, as floats, -1 = padding) holding every key
// some row of the block may attend. On the causal diagonal this skips the keys past the block's
// last query. Any position order works: the prefix is conservative.
static inline void live_prefix(const Mask& mask, const int32_t* qpos, int64_t br, int64_t rb, const float* kpf,
                               int64_t cols, int64_t align, int64_t* kl) {
  alignas(64) float iota[W];
  for (int i = 0; i < W; i++) iota[i] = (float)i;
  const vf vi = vload(iota), zero = vzero();
  for (int64_t r0 = 0; r0 < br; r0 += rb) {
    float lo = 2.0f, hi = -2.0f;  // union of the rows' allowed intervals (empty for padded rows)
    for (int64_t r = r0; r < imin(br, r0 + rb); r++) {
      if (qpos[r] < 0) continue;
      lo = fminf(lo, Mask::clampf(mask.lo(qpos[r])));
      hi = fmaxf(hi, Mask::clampf(mask.hi(qpos[r])));
    }
    // last allowed key index: max over the tile of (allowed ? index : -1), a vector at a time
    const vf vlo = vset1(lo), vhi = vset1(hi);
    vf last = vset1(-1.0f);
    for (int64_t c = 0; c < cols; c += W) {
      const vf kp = vload(kpf + c);
      const vm ok = mand(mand(vge(kp, zero), vge(kp, vlo)), vle(kp, vhi));
      last = vmax(last, vsel(ok, vadd(vi, vset1((float)c)), vset1(-1.0f)));
    }
    kl[r0 / rb] = imin(cols, round_up((int64_t)vhmax(last) + 1, align));
  }
}

// Key tile of head (b, g) transposed: dst[d][c] = k[b, s0 + c, g, d] for a tile of bc keys, zero
// for c >= cnt.
static inline void pack_kt(float* dst, const float* src, int64_t rowStride, int64_t cnt, int64_t D, int64_t bc) {
#if defined(__AVX512F__)
  if (D % 16 == 0) {  // whole 16-key groups by in-register transposes, then the key tail
    const int64_t full = cnt / 16 * 16;
    for (int64_t c0 = 0; c0 < full; c0 += 16)
      for (int64_t d0 = 0; d0 < D; d0 += 16) transpose16(dst + d0 * bc + c0, bc, src + c0 * rowStride + d0, rowStride);
    for (int64_t d = 0; d < D; d++) {
      float* o = dst + d * bc;
      for (int64_t c = full; c < cnt; c++) o[c] = src[c * rowStride + d];
      for (int64_t c = cnt; c < bc; c++) o[c] = 0.0f;
    }
    return;
  }
#endif
  for (int64_t d = 0; d < D; d++) {
    float* o = dst + d * bc;
    for (int64_t c = 0; c < cnt; c++) o[c] = src[c * rowStride + d];
    for (int64_t c = cnt; c < bc; c++) o[c] = 0.0f;
  }
}
// Rows copied into a [rows][Dp] buffer with zero padding (columns D..Dp, rows cnt..rows).
static inline void pack_rows(float* dst, const float* src, int64_t rowStride, int64_t cnt, int64_t rows, int64_t D,
                             int64_t Dp) {
  for (int64_t c = 0; c < rows; c++) {
    float* o = dst + c * Dp;
    if (c < cnt) {
      memcpy(o, src + c * rowStride, sizeof(float) * D);
      for (int64_t d = D; d < Dp; d++) o[d] = 0.0f;
    } else {
      memset(o, 0, sizeof(float) * Dp);
    }
  }
}
static inline void pos_to_float(float* dst, const int32_t* pos, int64_t cnt, int64_t padTo) {
  for (int64_t i = 0; i < cnt; i++) dst[i] = pos[i] < 0 ? -1.0f : (float)pos[i];
  for (int64_t i = cnt; i < padTo; i++) dst[i] = -1.0f;
}

}  // namespace SP_NS
