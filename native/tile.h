// Register-tile micro-kernel shared by the blocked SGEMM and the fused attention kernels.
//   C[MR][NV*W] (= or +=) sum_{k<K} A(k, r) * B[k][0 .. NV*W)
//   A(k, r) = A[k*ak + r*ar]   (broadcast operand: packed panel, a query row, a P/dS tile, ...)
//   B[k][:]  = B + k*ldb        (vector operand: NV full vectors per k, no tails)
// MR*NV accumulators stay in registers (AVX2: 6x2 of 16 ymm; AVX-512: 6x4, or 12x2 for 2-vector
// column blocks, of 32 zmm).
#pragma once
#include "simd.h"

namespace SP_NS {

#if defined(__AVX512F__)
#ifndef SP_KMR
#define SP_KMR 6
#endif
constexpr int kMR = SP_KMR;
#elif defined(__AVX2__)
constexpr int kMR = 6;
#else
constexpr int kMR = 4;
#endif

// acc[r][j] += sum_{k<K} A(k, r) * B[k][j*W .. j*W + W) with A(k, r) = A[k*ak + r*ar]: the k loop
// of every register tile here (GEMM, attention QK^T and P.V, the backward's S and dP passes).
template <int MR, int NV>
static inline __attribute__((always_inline)) void tile_acc(vf (&acc)[MR][NV], int64_t K, const float* __restrict A,
                                                           int64_t ak, int64_t ar, const float* __restrict B,
                                                           int64_t ldb) {
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; k++) {
    vf b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) b[j] = vload(B + k * ldb + j * W);
    const float* a = A + k * ak;
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
      const vf av = vset1(a[r * ar]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) acc[r][j] = vfma(av, b[j], acc[r][j]);
    }
  }
}

// acc = 0, then tile_acc: the start of the score tiles (forward QK^T, backward S).
template <int MR, int NV>
static inline __attribute__((always_inline)) void tile_acc0(vf (&acc)[MR][NV], int64_t K, const float* __restrict A,
                                                            int64_t ak, int64_t ar, const float* __restrict B,
                                                            int64_t ldb) {
#pragma GCC unroll 16
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) acc[r][j] = vzero();
  tile_acc<MR, NV>(acc, K, A, ak, ar, B, ldb);
}

// SCALE: C is first multiplied row-wise by rs[r] (online-softmax rescale of the accumulator).
template <int MR, int NV, bool ACC, bool SCALE>
static inline void tile(int64_t K, const float* __restrict A, int64_t ak, int64_t ar, const float* __restrict B,
                        int64_t ldb, float* __restrict C, int64_t ldc, const float* rs) {
  vf acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; r++) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) {
      if (ACC) {
        acc[r][j] = vload(C + r * ldc + j * W);
        if (SCALE) acc[r][j] = vmul(acc[r][j], vset1(rs[r]));
      } else {
        acc[r][j] = vzero();
      }
    }
  }
  tile_acc<MR, NV>(acc, K, A, ak, ar, B, ldb);
#pragma GCC unroll 16
  for (int r = 0; r < MR; r++) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) vstore(C + r * ldc + j * W, acc[r][j]);
  }
}

// Same tile for any row count mr in [1, kMR] (row remainders of attention tiles).
template <int NV, bool ACC, bool SCALE>
static inline void tile_rows(int mr, int64_t K, const float* A, int64_t ak, int64_t ar, const float* B, int64_t ldb,
                             float* C, int64_t ldc, const float* rs) {
  switch (mr) {
#define SP_TILE_CASE(n) \
  case n:               \
    if (n <= kMR) tile<(n <= kMR ? n : 1), NV, ACC, SCALE>(K, A, ak, ar, B, ldb, C, ldc, rs); \
    break;
    SP_TILE_CASE(1) SP_TILE_CASE(2) SP_TILE_CASE(3) SP_TILE_CASE(4) SP_TILE_CASE(5) SP_TILE_CASE(6)
    SP_TILE_CASE(7) SP_TILE_CASE(8) SP_TILE_CASE(9) SP_TILE_CASE(10) SP_TILE_CASE(11) SP_TILE_CASE(12)
#undef SP_TILE_CASE
    default: break;
  }
}

// Widest column block of the attention tiles: AVX-512 runs kMR x 4 vectors (6 x 64: 24 of 32
// zmm, 4 loads + 6 broadcasts per k; 95 % of peak from L1 against 86 % for 12 x 2 on Ice Lake);
// the 16-register ISAs stay at kMR x 2.
#ifndef SP_TILE_NV
#define SP_TILE_NV ((W == 16 && kMR <= 8) ? 4 : 2)
#endif
constexpr int kNVmax = SP_TILE_NV;

// C[m][ncols] (= or +=) sum_k A(k, r) B[k][:] for any m, with ncols a multiple of W (padded
// buffers). Column blocks of kNVmax vectors where they fit, then 2, then 1.
template <bool ACC, bool SCALE>
static inline void tile_block(int64_t m, int64_t ncols, int64_t K, const float* A, int64_t ak, int64_t ar,
                              const float* B, int64_t ldb, float* C, int64_t ldc, const float* rs) {
  int64_t c = 0;
  if (kNVmax == 4) {
    for (; c + 4 * W <= ncols; c += 4 * W) {
      for (int64_t r = 0; r < m; r += kMR) {
        const int mr = (int)imin(kMR, m - r);
        const float* Ar = A + r * ar;
        float* Cr = C + r * ldc + c;
        const float* rsr = SCALE ? rs + r : nullptr;
        if (mr == kMR) tile<kMR, (kNVmax == 4 ? 4 : 2), ACC, SCALE>(K, Ar, ak, ar, B + c, ldb, Cr, ldc, rsr);
        else tile_rows<(kNVmax == 4 ? 4 : 2), ACC, SCALE>(mr, K, Ar, ak, ar, B + c, ldb, Cr, ldc, rsr);
      }
    }
  }
  for (; c < ncols; c += 2 * W) {
    const bool two = c + 2 * W <= ncols;
    int64_t r = 0;
    // A 2-vector block with 6-row tiles keeps only 12 of 32 zmm busy (136 GFLOP/s on Ice Lake):
    // take rows 12 at a time there (24 accumulators, 165 GFLOP/s). Head dim 32 lives here.
    if (kNVmax == 4 && two)
      for (; r + 2 * kMR <= m; r += 2 * kMR)
        tile<2 * kMR, 2, ACC, SCALE>(K, A + r * ar, ak, ar, B + c, ldb, C + r * ldc + c, ldc, SCALE ? rs + r : nullptr);
    for (; r < m; r += kMR) {
      const int mr = (int)imin(kMR, m - r);
      const float* Ar = A + r * ar;
      float* Cr = C + r * ldc + c;
      const float* rsr = SCALE ? rs + r : nullptr;
      if (two) {
        if (mr == kMR) tile<kMR, 2, ACC, SCALE>(K, Ar, ak, ar, B + c, ldb, Cr, ldc, rsr);
        else tile_rows<2, ACC, SCALE>(mr, K, Ar, ak, ar, B + c, ldb, Cr, ldc, rsr);
      } else {
        tile_rows<1, ACC, SCALE>(mr, K, Ar, ak, ar, B + c, ldb, Cr, ldc, rsr);
      }
    }
  }
}

}  // namespace SP_NS
