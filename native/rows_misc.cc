// Elementwise and per-row kernels: GELU (tanh form), SwiGLU, RoPE, softmax cross-entropy, AdamW,
// reductions, and the FMA-throughput loop used to measure the machine's peak.
#include "api.h"
#include "simd.h"

namespace SP_NS {

// 0.5 x (1 + tanh(u)) == x * sigmoid(2u), u = k0 (x + k1 x^3). The sigmoid form has no
// cancellation for large negative x (1 + tanh(u) would lose every digit there).
static const float kG0 = 0.7978845608028654f, kG1 = 0.044715f;

static inline vf gelu_e(vf x, vf* u_out) {
  vf x2 = vmul(x, x);
  vf u = vmul(vset1(kG0), vfma(vmul(vset1(kG1), x2), x, x));
  *u_out = x2;
  return vexp(vmul(vset1(-2.0f), u));  // clamped at 2^127, never inf
}
static void geluForward(float* out, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i < vfull(n); i += W) {
    vf xv = vload(x + i), x2;
    vf e = gelu_e(xv, &x2);
    vstore(out + i, vdiv(xv, vadd(vset1(1.0f), e)));
  }
  for (; i < n; i++) {
    const float xv = x[i], u = kG0 * (xv + kG1 * xv * xv * xv);
    out[i] = xv / (1.0f + expf(fminf(-2.0f * u, 88.0f)));
  }
}
// d/dx [x s] = s + x s (1 - s) 2 u', s = sigmoid(2u), 1 - s = e s, u' = k0 (1 + 3 k1 x^2)
static void geluBackward(float* dx, const float* dOut, const float* x, int64_t n, bool acc) {
  int64_t i = 0;
  for (; i < vfull(n); i += W) {
    vf xv = vload(x + i), x2;
    vf e = gelu_e(xv, &x2);
    vf s = vdiv(vset1(1.0f), vadd(vset1(1.0f), e));
    vf du = vmul(vset1(2.0f * kG0), vfma(vset1(3.0f * kG1), x2, vset1(1.0f)));
    vf g = vfma(vmul(vmul(xv, s), vmul(e, s)), du, s);
    vstore(dx + i, vfma(vload(dOut + i), g, acc ? vload(dx + i) : vzero()));
  }
  for (; i < n; i++) {
    const float xv = x[i], u = kG0 * (xv + kG1 * xv * xv * xv);
    const float e = expf(fminf(-2.0f * u, 88.0f)), s = 1.0f / (1.0f + e);
    const float du = 2.0f * kG0 * (1.0f + 3.0f * kG1 * xv * xv);
    dx[i] = (acc ? dx[i] : 0.0f) + dOut[i] * (s + xv * s * (e * s) * du);
  }
}

// x: [N, 2F] = [gate | up]; out[N, F] = silu(gate) * up
static void swigluForward(float* out, const float* x, int64_t N, int64_t F) {
  for (int64_t r = 0; r < N; r++) {
    const float* g = x + r * 2 * F;
    const float* u = g + F;
    float* o = out + r * F;
    int64_t i = 0;
    for (; i < vfull(F); i += W) {
      vf gv = vload(g + i);
      vf s = vdiv(vset1(1.0f), vadd(vset1(1.0f), vexp(vsub(vzero(), gv))));
      vstore(o + i, vmul(vmul(gv, s), vload(u + i)));
    }
    for (; i < F; i++) o[i] = g[i] / (1.0f + expf(fminf(-g[i], 88.0f))) * u[i];
  }
}
// dgate += dOut up s (1 + g (1 - s)), dup += dOut g s; s = sigmoid(gate), 1 - s = e s
static void swigluBackward(float* dx, const float* dOut, const float* x, int64_t N, int64_t F, bool acc) {
  for (int64_t r = 0; r < N; r++) {
    const float* g = x + r * 2 * F;
    const float* u = g + F;
    const float* d = dOut + r * F;
    float* dg = dx + r * 2 * F;
    float* du = dg + F;
    int64_t i = 0;
    for (; i < vfull(F); i += W) {
      vf gv = vload(g + i), dv = vload(d + i);
      vf e = vexp(vsub(vzero(), gv));
      vf s = vdiv(vset1(1.0f), vadd(vset1(1.0f), e));
      vf ds = vmul(vmul(dv, vload(u + i)), s);
      vstore(dg + i, vfma(ds, vfma(gv, vmul(e, s), vset1(1.0f)), acc ? vload(dg + i) : vzero()));
      vstore(du + i, vfma(vmul(dv, gv), s, acc ? vload(du + i) : vzero()));
    }
    for (; i < F; i++) {
      const float e = expf(fminf(-g[i], 88.0f)), s = 1.0f / (1.0f + e);
      dg[i] = (acc ? dg[i] : 0.0f) + d[i] * u[i] * s * (1.0f + g[i] * e * s);
      du[i] = (acc ? du[i] : 0.0f) + d[i] * g[i] * s;
    }
  }
}

// Pairs (j, j + D/2) rotated by the angle whose cos/sin are cs[t][j] and cs[T + t][j] (layout
// [2][T][D/2]); sign = -1 applies the transpose. acc: out += instead of out = (out may alias x
// only when !acc: each pair is read before it is written).
static void rope(float* out, const float* x, const float* cs, int64_t B, int64_t T, int64_t H, int64_t D, float sign,
                 bool acc) {
  const int64_t h2 = D / 2;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const float* cr = cs + t * h2;
      const float* sr = cs + (T + t) * h2;
      for (int64_t h = 0; h < H; h++) {
        const int64_t off = ((b * T + t) * H + h) * D;
        const float* x1 = x + off;
        const float* x2 = x1 + h2;
        float* o1 = out + off;
        float* o2 = o1 + h2;
        int64_t j = 0;
        const vf sg = vset1(sign);
        for (; j < vfull(h2); j += W) {
          vf c = vload(cr + j), s = vmul(sg, vload(sr + j)), a = vload(x1 + j), bb = vload(x2 + j);
          vf r1 = vfnma(bb, s, vmul(a, c)), r2 = vfma(a, s, vmul(bb, c));
          if (acc) {
            r1 = vadd(r1, vload(o1 + j));
            r2 = vadd(r2, vload(o2 + j));
          }
          vstore(o1 + j, r1);
          vstore(o2 + j, r2);
        }
        for (; j < h2; j++) {
          const float c = cr[j], s = sign * sr[j], a = x1[j], bb = x2[j];
          const float r1 = a * c - bb * s, r2 = a * s + bb * c;
          o1[j] = acc ? o1[j] + r1 : r1;
          o2[j] = acc ? o2[j] + r2 : r2;
        }
      }
    }
}

// lse of one row: max, then sum of exp in float vectors folded into a double per row.
static float row_lse(const float* x, int64_t V) {
  vf vm = vset1(-__builtin_inff());
  int64_t i = 0;
  for (; i < vfull(V); i += W) vm = vmax(vm, vload(x + i));
  float mx = vhmax(vm);
  for (; i < V; i++) mx = x[i] > mx ? x[i] : mx;
  if (mx == -__builtin_inff()) return mx;
  const vf vmx = vset1(mx);
  double total = 0.0;
  for (i = 0; i < vfull(V);) {
    vf acc = vzero();
    const int64_t end = imin(vfull(V), i + 256 * W);  // fold to double every 256 vectors
    for (; i < end; i += W) acc = vadd(acc, vexp(vsub(vload(x + i), vmx)));
    total += vhsum(acc);
  }
  for (; i < V; i++) total += expf(x[i] - mx);
  return (float)(mx + log(total));
}
static void crossEntropyForward(float* losses, float* lse, const float* logits, const int32_t* targets, int64_t N,
                                int64_t V, int32_t ignore) {
  for (int64_t n = 0; n < N; n++) {
    const float* x = logits + n * V;
    lse[n] = row_lse(x, V);
    losses[n] = targets[n] == ignore ? 0.0f : lse[n] - x[targets[n]];
  }
}
static void crossEntropyBackward(float* dLogits, const float* logits, const float* lse, const int32_t* targets,
                                 int64_t N, int64_t V, int32_t ignore, float scale) {
  for (int64_t n = 0; n < N; n++) {
    if (targets[n] == ignore) continue;
    const float* x = logits + n * V;
    float* d = dLogits + n * V;
    const vf l = vset1(lse[n]), sc = vset1(scale);
    int64_t i = 0;
    for (; i < vfull(V); i += W) vstore(d + i, vfma(sc, vexp(vsub(vload(x + i), l)), vload(d + i)));
    for (; i < V; i++) d[i] += scale * expf(x[i] - lse[n]);
    d[targets[n]] -= scale;
  }
}

// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m/bc1 / (sqrt(v/bc2) + eps) + wd p)
static void adamw(float* p, float* m, float* v, const float* g, int64_t n, float lr, float b1, float b2, float eps,
                  float wd, float bc1, float bc2) {
  const vf vb1 = vset1(b1), vb2 = vset1(b2), vc1 = vset1(1.0f - b1), vc2 = vset1(1.0f - b2);
  const vf ib1 = vset1(1.0f / bc1), ib2 = vset1(1.0f / bc2), ve = vset1(eps), vlr = vset1(lr), vwd = vset1(wd);
  int64_t i = 0;
  for (; i < vfull(n); i += W) {
    vf gv = vload(g + i), pv = vload(p + i);
    vf mv = vfma(vb1, vload(m + i), vmul(vc1, gv));
    vf vv = vfma(vb2, vload(v + i), vmul(vc2, vmul(gv, gv)));
    vstore(m + i, mv);
    vstore(v + i, vv);
    vf upd = vdiv(vmul(mv, ib1), vadd(vsqrt(vmul(vv, ib2)), ve));
    vstore(p + i, vfnma(vlr, vfma(vwd, pv, upd), pv));
  }
  for (; i < n; i++) {
    m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    p[i] -= lr * (m[i] / bc1 / (sqrtf(v[i] / bc2) + eps) + wd * p[i]);
  }
}

static double sumSquares(const float* x, int64_t n) {
  int64_t i = 0;
  double s = 0.0;
#if defined(__AVX512F__)
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    a0 = _mm512_fmadd_pd(lo, lo, a0);
    a1 = _mm512_fmadd_pd(hi, hi, a1);
  }
  s = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
#elif defined(__AVX2__)
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + 8 <= n; i += 8) {
    __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    a0 = _mm256_fmadd_pd(lo, lo, a0);
    a1 = _mm256_fmadd_pd(hi, hi, a1);
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_add_pd(a0, a1));
  s = (t[0] + t[1]) + (t[2] + t[3]);
#endif
  for (; i < n; i++) s += (double)x[i] * (double)x[i];
  return s;
}
static void scale(float* x, int64_t n, float s) {
  const vf vs = vset1(s);
  int64_t i = 0;
  for (; i < vfull(n); i += W) vstore(x + i, vmul(vload(x + i), vs));
  for (; i < n; i++) x[i] *= s;
}
static void axpy(float* y, const float* x, int64_t n, float a) {
  const vf va = vset1(a);
  int64_t i = 0;
  for (; i < vfull(n); i += W) vstore(y + i, vfma(va, vload(x + i), vload(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

// 12 independent FMA chains (latency 4 x 2 pipes needs >= 8 in flight on Zen 4).
static double fmaPeak(int64_t iters, float* sink) {
  constexpr int NA = 12;
  vf acc[NA];
  for (int j = 0; j < NA; j++) acc[j] = vset1(1.0f + 0.001f * j);
  const vf a = vset1(0.999999f), b = vset1(1e-6f);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int j = 0; j < NA; j++) acc[j] = vfma(acc[j], a, b);
  }
  vf s = acc[0];
  for (int j = 1; j < NA; j++) s = vadd(s, acc[j]);
  *sink = vhsum(s);
  return (double)iters * NA * W * 2.0;
}

void register_rows_misc(KernelTable& t) {
  t.geluForward = geluForward;
  t.geluBackward = geluBackward;
  t.swigluForward = swigluForward;
  t.swigluBackward = swigluBackward;
  t.rope = rope;
  t.crossEntropyForward = crossEntropyForward;
  t.crossEntropyBackward = crossEntropyBackward;
  t.adamw = adamw;
  t.sumSquares = sumSquares;
  t.scale = scale;
  t.axpy = axpy;
  t.fmaPeak = fmaPeak;
}

}  // namespace SP_NS
