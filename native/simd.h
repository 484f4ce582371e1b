// Thin SIMD abstraction so every kernel is written once and compiled three times: with
// -mavx512f (16 lanes), with -mavx2 -mfma (8 lanes) and with no flags (1 lane, portable).
// Each compilation lives in its own namespace (SP_NS) and every helper here is `static inline`,
// so the three copies never merge at link time (no ODR folding of AVX-512 code into the scalar
// path). Do not use std:: templates in ISA translation units for the same reason.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define SP_NS sp_avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define SP_NS sp_avx2
#else
#define SP_NS sp_scalar
#endif

namespace SP_NS {

#if defined(__AVX512F__)
constexpr int W = 16;
typedef __m512 vf;
typedef __mmask16 vm;
static inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }
static inline void vstore_n(float* p, vf v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v); }
static inline vf vset1(float x) { return _mm512_set1_ps(x); }
static inline vf vzero() { return _mm512_setzero_ps(); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   // a*b + c
static inline vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } // c - a*b
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vsqrt(vf a) { return _mm512_sqrt_ps(a); }
static inline float vhsum(vf a) { return _mm512_reduce_add_ps(a); }
static inline float vhmax(vf a) { return _mm512_reduce_max_ps(a); }
static inline vm vle(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
static inline vm vge(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
static inline vm mand(vm a, vm b) { return (vm)(a & b); }
static inline vf vsel(vm m, vf yes, vf no) { return _mm512_mask_blend_ps(m, no, yes); }
static inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// 2^n for integral n in [-127, 127] (n = -127 gives exactly 0: biased exponent 0, mantissa 0).
static inline vf vpow2i(vf n) {
  __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
// Float whose bits are those of t shifted left by 23 (exponent field from t's low mantissa bits).
static inline vf vshl23(vf t) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23)); }
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int W = 8;
typedef __m256 vf;
typedef __m256 vm;
static inline __m256i tail_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vload_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
static inline void vstore_n(float* p, vf v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
static inline vf vset1(float x) { return _mm256_set1_ps(x); }
static inline vf vzero() { return _mm256_setzero_ps(); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vsqrt(vf a) { return _mm256_sqrt_ps(a); }
static inline float vhsum(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float vhmax(vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline vm vle(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
static inline vm vge(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
static inline vm mand(vm a, vm b) { return _mm256_and_ps(a, b); }
static inline vf vsel(vm m, vf yes, vf no) { return _mm256_blendv_ps(no, yes, m); }
static inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vpow2i(vf n) {
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline vf vshl23(vf t) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23)); }
#else
constexpr int W = 1;
typedef float vf;
typedef bool vm;
static inline vf vload(const float* p) { return *p; }
static inline void vstore(float* p, vf v) { *p = v; }
static inline vf vload_n(const float* p, int n) { return n > 0 ? *p : 0.0f; }
static inline void vstore_n(float* p, vf v, int n) { if (n > 0) *p = v; }
static inline vf vset1(float x) { return x; }
static inline vf vzero() { return 0.0f; }
static inline vf vadd(vf a, vf b) { return a + b; }
static inline vf vsub(vf a, vf b) { return a - b; }
static inline vf vmul(vf a, vf b) { return a * b; }
static inline vf vdiv(vf a, vf b) { return a / b; }
static inline vf vfma(vf a, vf b, vf c) { return fmaf(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return fmaf(-a, b, c); }
// Same NaN behaviour as maxps/minps: the second operand wins when either is NaN.
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline vf vsqrt(vf a) { return sqrtf(a); }
static inline float vhsum(vf a) { return a; }
static inline float vhmax(vf a) { return a; }
static inline vm vle(vf a, vf b) { return a <= b; }
static inline vm vge(vf a, vf b) { return a >= b; }
static inline vm mand(vm a, vm b) { return a && b; }
static inline vf vsel(vm m, vf yes, vf no) { return m ? yes : no; }
static inline vf vround(vf a) { return nearbyintf(a); }
static inline vf vpow2i(vf n) {
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float r;
  memcpy(&r, &bits, 4);
  return r;
}
static inline vf vshl23(vf t) {
  uint32_t bits;
  memcpy(&bits, &t, 4);
  bits <<= 23;
  float r;
  memcpy(&r, &bits, 4);
  return r;
}
#endif

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// 2^x. x is clamped to [-127, 127]; x <= -127 (including -inf) returns exactly 0, which is what
// masked softmax entries need. Degree-6 polynomial for 2^f on f in [-0.5, 0.5], fitted by
// relative least squares: max relative error 1.6e-8 before float rounding.
static inline vf vexp2(vf x) {
  x = vmin(vmax(x, vset1(-127.0f)), vset1(127.0f));
  // Round to nearest by the 1.5*2^23 trick; +127 folded in, so t's low bits are n + 127 in [0, 254]
  // and shifting them into the exponent field gives 2^n (n = -127: all-zero bits, exactly 0).
  const vf magic = vset1(12583039.0f);  // 1.5 * 2^23 + 127
  vf t = vadd(x, magic);
  vf f = vsub(x, vsub(t, magic));
  vf p = vset1(1.5370710752904415e-4f);
  p = vfma(p, f, vset1(1.339985290542245e-3f));
  p = vfma(p, f, vset1(9.618373587727547e-3f));
  p = vfma(p, f, vset1(5.550329014658928e-2f));
  p = vfma(p, f, vset1(2.4022647738456726e-1f));
  p = vfma(p, f, vset1(6.931471824645996e-1f));
  p = vfma(p, f, vset1(1.0f));
  return vmul(p, vshl23(t));
}
static const float kLog2e = 1.4426950408889634f;
static const float kLn2 = 0.6931471805599453f;
static inline vf vexp(vf x) { return vexp2(vmul(x, vset1(kLog2e))); }

// Whole-vector loop count and tail for n elements.
static inline int64_t vfull(int64_t n) { return n / W * W; }

#if defined(__AVX512F__)
// d[e * ldd + c] <- s[c * lds + e] for a 16 x 16 block (in-register transpose: 32-bit, 64-bit
// and two 128-bit-lane shuffle stages, ~4 shuffles per output vector instead of 16 scalar stores).
static inline void transpose16(float* d, int64_t ldd, const float* s, int64_t lds) {
  __m512 r[16], a[16], b[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(s + i * lds);
  for (int i = 0; i < 8; i++) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    const __m512d x0 = _mm512_castps_pd(a[4 * i]), x1 = _mm512_castps_pd(a[4 * i + 1]);
    const __m512d x2 = _mm512_castps_pd(a[4 * i + 2]), x3 = _mm512_castps_pd(a[4 * i + 3]);
    b[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
    b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
    b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
    b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
  }
  // b[4i + j], 128-bit lane L: rows 4i..4i+3 of input element 4L + j.
  for (int j = 0; j < 4; j++) {
    const __m512 u0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x44), u1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xEE);
    const __m512 u2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x44), u3 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xEE);
    _mm512_storeu_ps(d + (0 + j) * ldd, _mm512_shuffle_f32x4(u0, u2, 0x88));
    _mm512_storeu_ps(d + (4 + j) * ldd, _mm512_shuffle_f32x4(u0, u2, 0xDD));
    _mm512_storeu_ps(d + (8 + j) * ldd, _mm512_shuffle_f32x4(u1, u3, 0x88));
    _mm512_storeu_ps(d + (12 + j) * ldd, _mm512_shuffle_f32x4(u1, u3, 0xDD));
  }
}
#endif

}  // namespace SP_NS
