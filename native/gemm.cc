// Blocked, packed SGEMM (BLIS loop order) and the matmul forward/backward built on it.
// AVX-512 has its own blocking (gemm_avx512 below: 6 x 64 tile, B block in L2, A in place); the
// 16-register ISAs use:
//   short k: pack all of B into NR-wide panels once; jc (NCS columns of C) -> ic (MCS rows) -> pc
//   (KCS of k; pack A block MCSxKCS into MR-tall panels, or use row-major A as is) -> jr (NR) ->
//   ir (MR) -> tile.
//   long k: jc -> pc (pack B block KCxNC) -> ic (pack A block) -> jr -> ir -> tile (BLIS order).
// Packing zero-pads partial panels so the micro-kernel always runs full MRxNR; partial C tiles go
// through a small buffer. Transposes are just strides, which is all backward needs.
#include "api.h"
#include "tile.h"

namespace SP_NS {

#if !defined(__AVX512F__)  // blocking of the 16-register path (AVX-512: gemm_avx512 below)
constexpr int MR = kMR;
constexpr int NV = (W == 1) ? 2 : 2;
constexpr int NR = NV * W;
// Blocking of the long-k path (k > KLONG: dW = dOut^T x over many tokens). B block KC x NC: 512 KiB.
#ifndef SP_KC_LONG
#define SP_KC_LONG 256
#endif
#ifndef SP_MC_LONG
#define SP_MC_LONG 24
#endif
#ifndef SP_NC_LONG
#define SP_NC_LONG 512
#endif
constexpr int64_t KC = SP_KC_LONG;                        // B panel KC x NR: 16 KiB (AVX2): L1
constexpr int64_t MC = MR * (W == 1 ? 16 : SP_MC_LONG);   // A block 144 x 256 x 4 = 144 KiB: L2
constexpr int64_t NC = SP_NC_LONG;
// Blocking of the short-k path (forward and dx: k = width or FFN size). Few rows per block so that
// the A block (48 x 512 x 4 = 96 KiB) and the C block it updates stay in L2 next to the streamed B
// (measured on Zen 3 at N=4096, k = 256..1024: 2-6 % faster than the long-k blocking).
#ifndef SP_KC_SHORT
#define SP_KC_SHORT 512
#endif
#ifndef SP_MC_SHORT
#define SP_MC_SHORT 8
#endif
constexpr int64_t KCS = SP_KC_SHORT;
constexpr int64_t MCS = MR * (W == 1 ? 16 : SP_MC_SHORT);
constexpr int64_t NCS = 512;
constexpr int64_t KLONG = 2048;
#ifndef SP_DIRECT_A
#define SP_DIRECT_A 1
#endif
// Short-k path with k <= KCS: A is also used unpacked when C has at most this many columns
// (16384 x 64 x 64: packing A cost about as much as the product it feeds; 92 % instead of 75 %).
#ifndef SP_DIRECT_NC
#define SP_DIRECT_NC 128
#endif
constexpr bool DIRECT_A = SP_DIRECT_A;              // above: B block kept in L2 instead of C block
#endif

// Rows of a packed panel copied together: a few source rows (consecutive k) are read for every
// panel before moving on, so each source row is read sequentially instead of one 24/64-byte
// piece per page (the source rows are 1-16 KiB apart: DRAM page and TLB misses otherwise).
constexpr int64_t kPackRows = 8;

// dst[panel][k][P] <- src[k*ks + panel*P .. + P) for the `panels` full panels of P contiguous
// floats per k (column-major A, row-major B).
template <int P>
static void pack_contig(float* dst, const float* src, int64_t ks, int64_t panels, int64_t kc) {
  for (int64_t k0 = 0; k0 < kc; k0 += kPackRows) {
    const int64_t k1 = imin(kc, k0 + kPackRows);
    for (int64_t p = 0; p < panels; p++) {
      float* d = dst + p * P * kc;
      for (int64_t k = k0; k < k1; k++) memcpy(d + k * P, src + k * ks + p * P, sizeof(float) * P);
    }
  }
}

#if !defined(__AVX512F__)
// dst[panel][k][MR] <- A(i0 + panel*MR + r, p0 + k), zero rows past mc.
static void packA(float* dst, const GemmArgs& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
  int64_t ip = 0;
  if (g.ars == 1) {  // column-major A (dW = dOut^T x): MR contiguous floats per k
    ip = mc / MR * MR;
    pack_contig<MR>(dst, g.A + i0 + p0 * g.acs, g.acs, ip / MR, kc);
  }
  for (; ip < mc; ip += MR) {
    const int64_t rows = imin(MR, mc - ip);
    float* d = dst + ip * kc;
    const float* src = g.A + (i0 + ip) * g.ars + p0 * g.acs;
    if (g.acs == 1) {  // row-major A (forward x, dx's dOut): read each row sequentially
      for (int64_t r = 0; r < rows; r++) {
        const float* s = src + r * g.ars;
        for (int64_t k = 0; k < kc; k++) d[k * MR + r] = s[k];
      }
    } else {
      for (int64_t k = 0; k < kc; k++) {
        const float* s = src + k * g.acs;
        for (int64_t r = 0; r < rows; r++) d[k * MR + r] = s[r * g.ars];
      }
    }
    for (int64_t r = rows; r < MR; r++)
      for (int64_t k = 0; k < kc; k++) d[k * MR + r] = 0.0f;
  }
}

#endif

// dst[panel][k][NRP] <- B(p0 + k, j0 + panel*NRP + c), zero columns past nc.
template <int NRP>
static void packB_w(float* dst, const GemmArgs& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc) {
  constexpr int NR = NRP;
  int64_t jp = 0;
#if defined(__AVX512F__)
  if (g.brs == 1 && NR % 16 == 0) {  // B = W^T (forward): full panels by 16 x 16 transposes
    const int64_t kfull = kc / 16 * 16;
    for (; jp + NR <= nc; jp += NR) {
      float* d = dst + jp * kc;
      const float* src = g.B + p0 + (j0 + jp) * g.bcs;
      for (int c0 = 0; c0 < NR; c0 += 16) {
        for (int64_t k0 = 0; k0 < kfull; k0 += 16) transpose16(d + k0 * NR + c0, NR, src + c0 * g.bcs + k0, g.bcs);
        for (int64_t k = kfull; k < kc; k++)
          for (int c = c0; c < c0 + 16; c++) d[k * NR + c] = src[c * g.bcs + k];
      }
    }
  }
#endif
  if (g.bcs == 1) {  // row-major B: NR contiguous floats per k
    jp = nc / NR * NR;
    pack_contig<NR>(dst, g.B + p0 * g.brs + j0, g.brs, jp / NR, kc);
  }
  for (; jp < nc; jp += NR) {
    const int64_t cols = imin(NR, nc - jp);
    float* d = dst + jp * kc;
    const float* src = g.B + p0 * g.brs + (j0 + jp) * g.bcs;
    if (g.brs == 1) {  // B = W^T in the forward: each weight row is contiguous in k
      for (int64_t c = 0; c < cols; c++) {
        const float* s = src + c * g.bcs;
        for (int64_t k = 0; k < kc; k++) d[k * NR + c] = s[k];
      }
    } else {
      for (int64_t k = 0; k < kc; k++) {
        const float* s = src + k * g.brs;
        for (int64_t c = 0; c < cols; c++) d[k * NR + c] = s[c * g.bcs];
      }
    }
    for (int64_t c = cols; c < NR; c++)
      for (int64_t k = 0; k < kc; k++) d[k * NR + c] = 0.0f;
  }
}
#if !defined(__AVX512F__)
static void packB(float* dst, const GemmArgs& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc) {
  packB_w<NR>(dst, g, p0, kc, j0, nc);
}

// C[ic.., jc..] (+)= packed A block [mc x kc] . packed B block [kc x nc] (panels of kc x NR).
// bufA == nullptr: A is row-major (acs == 1) and mc a multiple of MR; the tile broadcasts straight
// from the rows of A (MR sequential streams, L1-resident across jr) instead of a packed copy.
static void macro(const GemmArgs& g, const float* bufA, const float* Bb, int64_t ic, int64_t mc, int64_t jc,
                  int64_t nc, int64_t kc, bool acc, int64_t pc) {
  alignas(64) float tmp[MR * NR];
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const float* Bp = Bb + jr * kc;
    const int64_t cols = imin(NR, nc - jr);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const float* Ap = bufA ? bufA + ir * kc : g.A + (ic + ir) * g.ars + pc;
      const int64_t ak = bufA ? MR : 1, ar = bufA ? 1 : g.ars;
      const int64_t rows = imin(MR, mc - ir);
      float* C = g.C + (ic + ir) * g.ldc + jc + jr;
      if (rows == MR && cols == NR) {
        if (acc) tile<MR, NV, true, false>(kc, Ap, ak, ar, Bp, NR, C, g.ldc, nullptr);
        else tile<MR, NV, false, false>(kc, Ap, ak, ar, Bp, NR, C, g.ldc, nullptr);
      } else {
        tile<MR, NV, false, false>(kc, Ap, ak, ar, Bp, NR, tmp, NR, nullptr);
        for (int64_t r = 0; r < rows; r++)
          for (int64_t c = 0; c < cols; c++)
            C[r * g.ldc + c] = acc ? C[r * g.ldc + c] + tmp[r * NR + c] : tmp[r * NR + c];
      }
    }
  }
}

// Long k (dW = dOut^T x over many tokens): BLIS order, the KC x NC block of B stays in L2 for
// every row block; C is revisited once per KC step.
static void gemm_long_k(const GemmArgs& g) {
  float* bufA = sp_scratch(0, (size_t)(MC * KC));
  float* bufB = sp_scratch(1, (size_t)(KC * round_up(imin(NC, g.n), NR)));
  for (int64_t jc = 0; jc < g.n; jc += NC) {
    const int64_t nc = imin(NC, g.n - jc);
    for (int64_t pc = 0; pc < g.k; pc += KC) {
      const int64_t kc = imin(KC, g.k - pc);
      packB(bufB, g, pc, kc, jc, nc);
      for (int64_t ic = 0; ic < g.m; ic += MC) {
        const int64_t mc = imin(MC, g.m - ic);
        packA(bufA, g, ic, mc, pc, kc);
        macro(g, bufA, bufB, ic, mc, jc, nc, kc, g.accumulate || pc > 0, pc);
      }
    }
  }
}

// Short k (forward, dx = dOut w): all of B is packed once, as [jc block][pc block][panel][kc][NR];
// then each MCS x NC block of C sees the whole k range while it stays in L2, so C goes through
// memory once instead of once per KC step.
static void gemm_short_k(const GemmArgs& g) {
  float* bufA = sp_scratch(0, (size_t)(MCS * KCS));
  const int64_t np = round_up(g.n, NR);
  const int64_t ncb = g.k <= KCS ? 4 * NCS : NCS;  // one KC step: C is visited once whatever the block
  float* bufB = sp_scratch(1, (size_t)(g.k * np));
  for (int64_t jc = 0; jc < g.n; jc += ncb)
    for (int64_t pc = 0; pc < g.k; pc += KCS)
      packB(bufB + jc * g.k + pc * imin(ncb, np - jc), g, pc, imin(KCS, g.k - pc), jc, imin(ncb, g.n - jc));
  for (int64_t jc = 0; jc < g.n; jc += ncb) {
    const int64_t nc = imin(ncb, g.n - jc);
    for (int64_t ic = 0; ic < g.m; ic += MCS) {
      const int64_t mc = imin(MCS, g.m - ic);
      for (int64_t pc = 0; pc < g.k; pc += KCS) {
        const int64_t kc = imin(KCS, g.k - pc);
        // Row-major A over several KC steps, or feeding only a few column panels: no packing
        // (measured: for k <= KC and many panels packing wins).
        const bool direct = DIRECT_A && g.acs == 1 && (g.k > KCS || nc <= SP_DIRECT_NC) && mc % MR == 0;
        if (!direct) packA(bufA, g, ic, mc, pc, kc);
        macro(g, direct ? nullptr : bufA, bufB + jc * g.k + pc * imin(ncb, np - jc), ic, mc, jc, nc, kc,
              g.accumulate || pc > 0, pc);
      }
    }
  }
}

#endif  // !__AVX512F__

#if defined(__AVX512F__)
// AVX-512 (32 zmm): a 6 x 64 tile (24 accumulators, 4 vector loads + 6 broadcasts per k; 95 % of
// the FMA peak from L1/L2 on Ice Lake, against 86 % for the 12 x 32 tile, whose 12 broadcasts per
// k crowd the two vector ports). Loop order jc -> pc (pack the KC x NC block of B: 512 KiB, L2)
// -> ic (96-row blocks) -> ir (6 rows of A: 6 KiB, stays in L1 across the column panels) -> jr
// -> tile. Row-major A is read in place; column-major A is packed per ic block (below). Full tiles
// of the forward and dx prefetch the next tile's C and A (tile_pf; one-process A/B: 16384x64x64
// 13-30 % faster, 512^3 2-7 %, the model's forward GEMMs 1-8 % and dx 1-3 %; dW, whose A comes
// from the packed buffer, measured no gain and keeps the plain tile).
constexpr int MR5 = 6, NV5 = 4, NR5 = NV5 * W;
#ifndef SP_KC5
#define SP_KC5 512
#endif
#ifndef SP_NC5
#define SP_NC5 256
#endif
constexpr int64_t KC5 = SP_KC5, NC5 = SP_NC5;
// Column-major A (dW = dOut^T x: each k is another token row of dOut, M floats apart) is packed
// per MC5-row block into 6-row panels, since reading it in place touches one page per k. Those
// GEMMs take k in steps of KCA5 = 256, not KC5: the B block then holds twice the columns, so A is
// packed half as often when n > NC5 (fc2's dW, [256 x 1024] over 2-4K tokens: 4-7 % faster; the
// model's other dW shapes within 1.5 %; bench/kernels/ab/ab.sh against KC5).
constexpr int64_t MC5 = 96;
#ifndef SP_KCA5
#define SP_KCA5 256
#endif
constexpr int64_t KCA5 = SP_KCA5;
// Full 6 x 64 tile that also prefetches the next tile's operands while it runs: its 24 C lines
// for writing (prefetchw: the store then finds them owned in L1 instead of waiting on a read for
// ownership) and, where the next 6-row A panel is one contiguous block (row-major A, ars == kc),
// its lines into L1. One prefetch per k step, after the FMAs of that step.
template <bool ACC>
static inline void tile_pf(int64_t kc, const float* __restrict A, int64_t ak, int64_t ar, const float* __restrict B,
                           float* __restrict C, int64_t ldc, const char* pfC, const char* pfA, int64_t nA) {
  vf acc[MR5][NV5];
#pragma GCC unroll 6
  for (int r = 0; r < MR5; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV5; j++) acc[r][j] = ACC ? vload(C + r * ldc + j * W) : vzero();
  const int64_t nC = pfC ? MR5 * NV5 : 0;
  const int64_t k1 = imin(kc, nC), k2 = imin(kc, nC + nA);
  for (int64_t k = 0; k < k1; k++) {
    tile_acc<MR5, NV5>(acc, 1, A + k * ak, ak, ar, B + k * NR5, NR5);
    __builtin_prefetch(pfC + (k >> 2) * ldc * 4 + (k & 3) * 64, 1, 3);
  }
  for (int64_t k = k1; k < k2; k++) {
    tile_acc<MR5, NV5>(acc, 1, A + k * ak, ak, ar, B + k * NR5, NR5);
    __builtin_prefetch(pfA + (k - nC) * 64, 0, 3);
  }
  tile_acc<MR5, NV5>(acc, kc - k2, A + k2 * ak, ak, ar, B + k2 * NR5, NR5);
#pragma GCC unroll 6
  for (int r = 0; r < MR5; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV5; j++) vstore(C + r * ldc + j * W, acc[r][j]);
}

static void gemm_avx512(const GemmArgs& g) {
  alignas(64) float tmp[MR5 * NR5];
  // The B block holds KC5 x NC5 floats (512 KiB); a shorter k (forward and dx at width 192-768)
  // fits that many more columns, so each 6-row A panel serves more of them per visit.
  const bool packA5 = g.ars == 1 && g.acs != 1;
  const int64_t kcs = packA5 ? KCA5 : KC5;  // k step
  const int64_t kc0 = imin(kcs, g.k);
  const int64_t ncb = imax(NC5, (KC5 * NC5 / kc0) / NR5 * NR5);
  float* bufB = sp_scratch(1, (size_t)(kc0 * round_up(imin(ncb, g.n), NR5)));
  float* bufA = packA5 ? sp_scratch(0, (size_t)(MC5 * kcs)) : nullptr;
  for (int64_t jc = 0; jc < g.n; jc += ncb) {
    const int64_t nc = imin(ncb, g.n - jc);
    for (int64_t pc = 0; pc < g.k; pc += kcs) {
      const int64_t kc = imin(kcs, g.k - pc);
      const bool acc = g.accumulate || pc > 0;
      packB_w<NR5>(bufB, g, pc, kc, jc, nc);
      for (int64_t ic = 0; ic < g.m; ic += MC5) {
        const int64_t mc = imin(MC5, g.m - ic);
        if (packA5) {
          const int64_t full = mc / MR5;
          pack_contig<MR5>(bufA, g.A + ic + pc * g.acs, g.acs, full, kc);
          if (full * MR5 < mc) {  // last partial panel, zero rows past m
            float* d = bufA + full * MR5 * kc;
            const int64_t rows = mc - full * MR5;
            for (int64_t k = 0; k < kc; k++) {
              const float* sk = g.A + ic + full * MR5 + (pc + k) * g.acs;
              for (int r = 0; r < MR5; r++) d[k * MR5 + r] = r < rows ? sk[r] : 0.0f;
            }
          }
        }
        for (int64_t ir = 0; ir < mc; ir += MR5) {
          const int rows = (int)imin(MR5, mc - ir);
          // packed panel: A(k, r) = Ap[k * MR5 + r] (padded rows are zeros); else in place
          const float* Ap = packA5 ? bufA + ir * kc : g.A + (ic + ir) * g.ars + pc * g.acs;
          const int64_t ak = packA5 ? MR5 : g.acs, ar = packA5 ? 1 : g.ars;
          float* Crow = g.C + (ic + ir) * g.ldc + jc;
          for (int64_t jr = 0; jr < nc; jr += NR5) {
            const float* Bp = bufB + jr * kc;
            const int64_t cols = imin(NR5, nc - jr);
            float* C = Crow + jr;
            if (rows == MR5 && cols == NR5 && packA5) {  // dW: prefetching measured no gain here
              if (acc) tile<MR5, NV5, true, false>(kc, Ap, ak, ar, Bp, NR5, C, g.ldc, nullptr);
              else tile<MR5, NV5, false, false>(kc, Ap, ak, ar, Bp, NR5, C, g.ldc, nullptr);
            } else if (rows == MR5 && cols == NR5) {
              // Prefetch the next tile: the next column panel of these rows, or the first panel of
              // the next 6 rows (whose A rows follow these when A is row-major with ars == kc).
              const bool lastCol = jr + NR5 >= nc;
              const char* pfC = (const char*)(lastCol ? Crow + MR5 * g.ldc : C + NR5);
              const int64_t nA = lastCol && g.acs == 1 && g.ars == kc ? MR5 * kc / 16 : 0;
              const char* pfA = (const char*)(Ap + MR5 * g.ars);
              if (acc) tile_pf<true>(kc, Ap, ak, ar, Bp, C, g.ldc, pfC, pfA, nA);
              else tile_pf<false>(kc, Ap, ak, ar, Bp, C, g.ldc, pfC, pfA, nA);
            } else {  // edge tile: exact row count (A has no rows past m), columns via tmp
              tile_rows<NV5, false, false>(rows, kc, Ap, ak, ar, Bp, NR5, tmp, NR5, nullptr);
              for (int r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++)
                  C[r * g.ldc + c] = acc ? C[r * g.ldc + c] + tmp[r * NR5 + c] : tmp[r * NR5 + c];
            }
          }
        }
      }
    }
  }
}
#endif

static void gemm1(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) {  // empty sum: overwrite with zeros, accumulate adds nothing
    if (!g.accumulate)
      for (int64_t i = 0; i < g.m; i++) memset(g.C + i * g.ldc, 0, sizeof(float) * g.n);
    return;
  }
#if defined(__AVX512F__)
  gemm_avx512(g);
#else
  if (g.k > KLONG) gemm_long_k(g);
  else gemm_short_k(g);
#endif
}

// Splits C into sp_threads() row or column stripes (whichever dimension is longer), each a whole
// single-threaded GEMM with its own packing buffers.
struct GemmSplit {
  GemmArgs g;
  bool byRows;
  int64_t step;
};
static void gemm_part(void* ctx, int64_t item, int) {
  const GemmSplit& s = *(const GemmSplit*)ctx;
  GemmArgs p = s.g;
  const int64_t total = s.byRows ? p.m : p.n;
  const int64_t b = item * s.step, e = imin(total, b + s.step);
  if (b >= e) return;
  if (s.byRows) {
    p.m = e - b;
    p.A += b * p.ars;
    p.C += b * p.ldc;
  } else {
    p.n = e - b;
    p.B += b * p.bcs;
    p.C += b;
  }
  gemm1(p);
}
static void gemm_par(const GemmArgs& g) {
  const int t = sp_threads();
  if (t <= 1 || (g.m * g.n * g.k) < (int64_t)1 << 18) return gemm1(g);
  GemmSplit s{g, g.m >= g.n, 0};
  const int64_t total = s.byRows ? g.m : g.n;
#if defined(__AVX512F__)
  const int64_t align = s.byRows ? MR5 : NR5;
#else
  const int64_t align = s.byRows ? MR : NR;
#endif
  s.step = round_up((total + t - 1) / t, align);
  sp_parallel_for((total + s.step - 1) / s.step, gemm_part, &s);
}

// out[N, M] = x[N, K] . w[M, K]^T (+ bias[M])
static void matmulForward(float* out, const float* x, const float* w, const float* bias, int64_t N, int64_t K,
                          int64_t M) {
  gemm_par(GemmArgs{N, M, K, x, K, 1, w, 1, K, out, M, false});
  if (bias) {
    for (int64_t n = 0; n < N; n++) {
      float* o = out + n * M;
      int64_t j = 0;
      for (; j < vfull(M); j += W) vstore(o + j, vadd(vload(o + j), vload(bias + j)));
      for (; j < M; j++) o[j] += bias[j];
    }
  }
}

// dx[N,K] (+)= dOut[N,M] . w[M,K];  dw[M,K] += dOut^T . x;  db[M] += sum_n dOut[n,:]
static void matmulBackward(float* dx, float* dw, float* db, const float* dOut, const float* x, const float* w,
                           int64_t N, int64_t K, int64_t M, bool dxAcc) {
  if (dx) gemm_par(GemmArgs{N, K, M, dOut, M, 1, w, K, 1, dx, K, dxAcc});
  if (dw) gemm_par(GemmArgs{M, K, N, dOut, 1, M, x, K, 1, dw, K, true});
  if (db) {
    for (int64_t n = 0; n < N; n++) {
      const float* d = dOut + n * M;
      int64_t j = 0;
      for (; j < vfull(M); j += W) vstore(db + j, vadd(vload(db + j), vload(d + j)));
      for (; j < M; j++) db[j] += d[j];
    }
  }
}

void register_gemm(KernelTable& t) {
  t.gemm = gemm1;
  t.matmulForward = matmulForward;
  t.matmulBackward = matmulBackward;
}

}  // namespace SP_NS
