// A/B of two builds of the native kernels in ONE process (bench/kernels/ab/ab.sh builds them):
// the base revision's gemm.cc, attn_fwd.cc and attn_bwd.cc compiled into namespace sp_old, the
// working tree's into the ISA namespace (sp_avx512 or sp_avx2). Calls alternate between the two
// builds, pair by pair, so a shared host's drift hits both alike; each case reports the median
// over pairs of new time / old time (CPU time of this thread), after checking that the two builds
// agree (relative difference of the outputs). One JSON line per case on stdout.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

#include "api.h"

#ifndef AB_NS
#define AB_NS sp_avx512
#endif
namespace AB_NS {
void register_gemm(KernelTable& t);
void register_attn_fwd(KernelTable& t);
void register_attn_bwd(KernelTable& t);
}  // namespace AB_NS
namespace sp_old {
void register_gemm(KernelTable& t);
void register_attn_fwd(KernelTable& t);
void register_attn_bwd(KernelTable& t);
}  // namespace sp_old

// The runtime services the kernels expect (runtime.cc), single-threaded.
static float* slots[8];
static size_t slotn[8];
float* sp_scratch(int s, size_t n) {
  if (slotn[s] < n) {
    free(slots[s]);
    slots[s] = (float*)aligned_alloc(64, (n * 4 + 63) / 64 * 64);
    slotn[s] = n;
  }
  return slots[s];
}
void sp_parallel_for(int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
}
int sp_threads() { return 1; }

static double cpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static std::vector<float> rnd(size_t n, unsigned seed) {
  std::vector<float> v(n);
  for (auto& x : v) x = (seed = seed * 1664525u + 1013904223u, (seed >> 8) / 16777216.0f - 0.5f);
  return v;
}
static double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isinf(a[i]) && a[i] == b[i]) continue;
    d = fmax(d, fabs((double)a[i] - b[i]));
    m = fmax(m, fabs((double)a[i]));
  }
  return d / (m > 0 ? m : 1);
}
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// run(which) executes the case on build `which` (0 old, 1 new); outputs(which) returns what that
// build's last run wrote (the timed calls then copy nothing).
template <class Run, class Out>
static void ab_case(const char* kernel, const char* shape, int pairs, Run run, Out outputs) {
  run(0), run(1);  // warm-up, and the check
  const double diff = rel_diff(outputs(0), outputs(1));
  std::vector<double> ratios, t[2];
  for (int p = 0; p < pairs; p++) {
    double d[2];
    for (int w = 0; w < 2; w++) {
      const int which = (p + w) % 2;  // alternate which build goes first
      const double t0 = cpu();
      run(which);
      d[which] = cpu() - t0;
      t[which].push_back(d[which]);
    }
    ratios.push_back(d[1] / d[0]);
  }
  printf("{\"kernel\":\"%s\",\"shape\":%s,\"pairs\":%d,\"newOverOld\":%.4f,\"oldSec\":%.6g,\"newSec\":%.6g,\"relDiff\":%.3g,\"checkOk\":%s}\n",
         kernel, shape, pairs, median(ratios), median(t[0]), median(t[1]), diff, diff < 1e-4 ? "true" : "false");
  fflush(stdout);
}
// run(which) executes the case and returns its outputs (copied on every call: the model's shapes,
// where that costs little next to the kernel).
template <class Run>
static void ab_case(const char* kernel, const char* shape, int pairs, Run run) {
  std::vector<float> last[2];
  ab_case(kernel, shape, pairs, [&](int b) { last[b] = run(b); }, [&](int b) { return last[b]; });
}

int main(int argc, char** argv) {
  const bool smoke = argc > 1 && !strcmp(argv[1], "--smoke");
  KernelTable tb[2] = {};
  sp_old::register_gemm(tb[0]);
  sp_old::register_attn_fwd(tb[0]);
  sp_old::register_attn_bwd(tb[0]);
  AB_NS::register_gemm(tb[1]);
  AB_NS::register_attn_fwd(tb[1]);
  AB_NS::register_attn_bwd(tb[1]);

  // GEMM shapes of the reference model's step (N tokens, K in, M out): forward, dx, dW.
  struct G { int N, K, M; };
  const std::vector<G> gs = smoke ? std::vector<G>{{64, 32, 48}} : std::vector<G>{{4096, 256, 768}, {4096, 256, 1024}, {4096, 1024, 256}, {2048, 1024, 256}};
  for (const G& g : gs) {
    const auto x = rnd((size_t)g.N * g.K, 1), w = rnd((size_t)g.M * g.K, 2), dO = rnd((size_t)g.N * g.M, 3);
    char shape[96];
    snprintf(shape, sizeof shape, "{\"N\":%d,\"K\":%d,\"M\":%d}", g.N, g.K, g.M);
    const int pairs = smoke ? 1 : 12;
    ab_case("matmulForward", shape, pairs, [&](int b) {
      std::vector<float> out((size_t)g.N * g.M);
      tb[b].matmulForward(out.data(), x.data(), w.data(), nullptr, g.N, g.K, g.M);
      return out;
    });
    ab_case("matmulBackward dx", shape, pairs, [&](int b) {
      std::vector<float> dx((size_t)g.N * g.K);
      tb[b].matmulBackward(dx.data(), nullptr, nullptr, dO.data(), x.data(), w.data(), g.N, g.K, g.M, true);
      return dx;
    });
    ab_case("matmulBackward dW", shape, pairs, [&](int b) {
      std::vector<float> dw((size_t)g.M * g.K);
      tb[b].matmulBackward(nullptr, dw.data(), nullptr, dO.data(), x.data(), w.data(), g.N, g.K, g.M, true);
      return dw;
    });
  }

  // SGEMM of `bench kernels` (C = A B^T, B stored [n][k] as the forward's weights), each build
  // writing its own C, reused between calls: no page faults or copies in the sub-millisecond
  // 16384 x 64 x 64 case.
  struct S { int m, n, k; };
  const std::vector<S> ss = smoke ? std::vector<S>{{96, 64, 32}} : std::vector<S>{{512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048}, {16384, 64, 64}};
  for (const S& c : ss) {
    const auto A = rnd((size_t)c.m * c.k, 8), B = rnd((size_t)c.n * c.k, 9);
    std::vector<float> C[2] = {std::vector<float>((size_t)c.m * c.n), std::vector<float>((size_t)c.m * c.n)};
    char shape[96];
    snprintf(shape, sizeof shape, "{\"M\":%d,\"N\":%d,\"K\":%d}", c.m, c.n, c.k);
    const int reps = smoke ? 1 : std::max(1, (int)(2e8 / (2.0 * c.m * c.n * c.k)));  // >= ~1 ms per timed call
    ab_case("sgemm", shape, smoke ? 1 : 15,
            [&](int b) {
              for (int i = 0; i < reps; i++)
                tb[b].gemm(GemmArgs{c.m, c.n, c.k, A.data(), c.k, 1, B.data(), 1, c.k, C[b].data(), c.n, false});
            },
            [&](int b) { return C[b]; });
  }

  // Attention: the model's heads (H = G = 8, D = 32, interleaved) and the kernel bench's shapes.
  struct A { int N, H, D, causal; };
  const std::vector<A> as = smoke ? std::vector<A>{{80, 2, 32, 1}}
                                  : std::vector<A>{{4096, 8, 32, 1}, {2048, 8, 32, 1}, {1024, 1, 64, 1}, {4096, 1, 64, 1}, {1024, 1, 128, 1}, {4096, 1, 128, 0}};
  for (const A& c : as) {
    const size_t n = (size_t)c.N * c.H * c.D;
    const auto q = rnd(n, 4), k = rnd(n, 5), v = rnd(n, 6), dO = rnd(n, 7);
    std::vector<int32_t> pos(c.N);
    for (int i = 0; i < c.N; i++) pos[i] = i;
    AttnArgs a{};
    a.B = 1, a.Tq = c.N, a.Tk = c.N, a.H = c.H, a.G = c.H, a.D = c.D, a.scale = 1 / sqrtf((float)c.D), a.causal = c.causal;
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.qPos = pos.data(), a.kPos = pos.data();
    a.h0 = 0, a.h1 = c.H;  // every head; builds before the head range read g0, g1 here: every group (G = H)
    // forward (from the empty running state), then delta = rowsum(dOut * out) for the backward
    std::vector<float> out(n), lse((size_t)c.N * c.H), delta((size_t)c.N * c.H);
    const auto fwd = [&](int b) {
      std::fill(out.begin(), out.end(), 0.0f);
      std::fill(lse.begin(), lse.end(), -INFINITY);
      a.out = out.data(), a.lse = lse.data();
      tb[b].attnForward(a);
      std::vector<float> r = out;
      r.insert(r.end(), lse.begin(), lse.end());
      return r;
    };
    fwd(0);
    for (size_t t = 0; t < (size_t)c.N * c.H; t++) {
      double s = 0;
      for (int d = 0; d < c.D; d++) s += (double)dO[t * c.D + d] * out[t * c.D + d];
      delta[t] = (float)s;
    }
    char shape[128];
    snprintf(shape, sizeof shape, "{\"N\":%d,\"H\":%d,\"G\":%d,\"D\":%d,\"causal\":%s}", c.N, c.H, c.H, c.D, c.causal ? "true" : "false");
    const int pairs = smoke ? 1 : (size_t)c.N * c.H >= 16384 ? 6 : 20;
    ab_case("attnForward", shape, pairs, fwd);
    const std::vector<float> outF = out, lseF = lse;
    ab_case("attnBackward", shape, pairs, [&](int b) {
      std::vector<float> dq(n), dk(n), dv(n);
      AttnArgs g = a;
      g.out = const_cast<float*>(outF.data()), g.lse = const_cast<float*>(lseF.data());
      g.dOut = dO.data(), g.delta = delta.data(), g.dq = dq.data(), g.dk = dk.data(), g.dv = dv.data();
      tb[b].attnBackward(g);
      dq.insert(dq.end(), dk.begin(), dk.end());
      dq.insert(dq.end(), dv.begin(), dv.end());
      return dq;
    });
  }
  return 0;
}
