// Interface between the N-API glue (addon.cc, compiled for baseline x86-64) and the three ISA
// builds of the kernels (namespaces sp_avx512, sp_avx2, sp_scalar). Only plain C types cross it.
// Shapes follow src/kernels/types.ts; every pointer is already offset to element 0 of its view.
#pragma once
#include <stddef.h>
#include <stdint.h>

// ---- services the glue provides to kernels ----
// Per-thread scratch buffer `slot` (0..7) of at least n floats, 64-byte aligned, kept between
// calls. Slots 0..3 are for per-worker use inside sp_parallel_for; slots 4..7 belong to the
// calling thread and may be shared read-only with workers.
float* sp_scratch(int slot, size_t n);
// Runs fn(ctx, item, worker) for item in [0, n) on the calling thread's pool (items are handed out
// dynamically so unequal items, e.g. causal tiles, balance). worker is in [0, sp_threads()).
void sp_parallel_for(int64_t n, void (*fn)(void* ctx, int64_t item, int worker), void* ctx);
int sp_threads();

// C[m x n] (= or +=) sum_k A(i,k) B(k,j), with A(i,k) = A[i*ars + k*acs], B(k,j) = B[k*brs + j*bcs].
struct GemmArgs {
  int64_t m, n, k;
  const float* A;
  int64_t ars, acs;
  const float* B;
  int64_t brs, bcs;
  float* C;
  int64_t ldc;
  bool accumulate;
};

struct AttnArgs {
  int64_t B, Tq, Tk, H, G, D;
  float scale;
  bool causal;
  bool hasLeft, hasRight;
  int64_t left, right;
  const float *q, *k, *v;
  const int32_t *qPos, *kPos;
  float *out, *lse;  // forward: running state (in/out); backward: final out, lse (read only)
  // backward only
  const float *dOut, *delta;
  float *dq, *dk, *dv;
  // query heads [h0, h1) are computed; the other heads of out, lse, dq are not touched, and dk, dv
  // of a kv group take only those heads' terms (none: untouched). Last in the struct, so older
  // builds read the same prefix.
  int64_t h0, h1;
};

struct KernelTable {
  const char* name;
  void (*gemm)(const GemmArgs& a);  // single-threaded
  void (*matmulForward)(float* out, const float* x, const float* w, const float* bias, int64_t N, int64_t K, int64_t M);
  // dxAcc: dx += (else dx =); dw and db always accumulate.
  void (*matmulBackward)(float* dx, float* dw, float* db, const float* dOut, const float* x, const float* w, int64_t N,
                         int64_t K, int64_t M, bool dxAcc);
  void (*attnForward)(const AttnArgs& a);
  void (*attnBackward)(const AttnArgs& a);
  void (*attnDelta)(float* delta, const float* dOut, const float* out, int64_t rows, int64_t D);
  void (*attnMerge)(float* out, float* lse, const float* out2, const float* lse2, int64_t rows, int64_t D);
  void (*layerNormForward)(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                           int64_t N, int64_t C, float eps);
  void (*layerNormBackward)(float* dx, float* dw, float* db, const float* dOut, const float* x, const float* w,
                            const float* mean, const float* rstd, int64_t N, int64_t C);
  void (*rmsNormForward)(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps);
  void (*rmsNormBackward)(float* dx, float* dw, const float* dOut, const float* x, const float* w, const float* rstd,
                          int64_t N, int64_t C);
  void (*geluForward)(float* out, const float* x, int64_t n);
  void (*geluBackward)(float* dx, const float* dOut, const float* x, int64_t n, bool acc);  // acc: dx +=, else =
  void (*swigluForward)(float* out, const float* x, int64_t N, int64_t F);
  void (*swigluBackward)(float* dx, const float* dOut, const float* x, int64_t N, int64_t F, bool acc);
  // cs: [T, D/2] cosines then [T, D/2] sines (computed in float64 by the glue). sign = +1 forward,
  // -1 for the transpose; acc: out += instead of out =.
  void (*rope)(float* out, const float* x, const float* cs, int64_t B, int64_t T, int64_t H, int64_t D, float sign,
               bool acc);
  void (*crossEntropyForward)(float* losses, float* lse, const float* logits, const int32_t* targets, int64_t N,
                              int64_t V, int32_t ignore);
  void (*crossEntropyBackward)(float* dLogits, const float* logits, const float* lse, const int32_t* targets, int64_t N,
                               int64_t V, int32_t ignore, float scale);
  void (*adamw)(float* p, float* m, float* v, const float* g, int64_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2);
  double (*sumSquares)(const float* x, int64_t n);
  void (*scale)(float* x, int64_t n, float s);
  void (*axpy)(float* y, const float* x, int64_t n, float a);
  // FMA-throughput loop for the peak measurement: `iters` rounds of independent FMA chains;
  // returns the FLOPs executed (result kept alive through *sink).
  double (*fmaPeak)(int64_t iters, float* sink);
};

namespace sp_avx512 { const KernelTable* table(); }
namespace sp_avx2 { const KernelTable* table(); }
namespace sp_scalar { const KernelTable* table(); }
