// Row-wise kernels over [rows, C]: LayerNorm, RMSNorm (forward + accumulating backward, llm.c
// formulas), attention delta = rowsum(dOut * out) and the (out, lse) merge of algorithms.md §0.3.
#include "api.h"
#include "simd.h"

namespace SP_NS {

static inline float dot(const float* a, const float* b, int64_t n) {
  vf s0 = vzero(), s1 = vzero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = vfma(vload(a + i), vload(b + i), s0);
    s1 = vfma(vload(a + i + W), vload(b + i + W), s1);
  }
  for (; i < vfull(n); i += W) s0 = vfma(vload(a + i), vload(b + i), s0);
  float s = vhsum(vadd(s0, s1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}
static inline float sum(const float* a, int64_t n) {
  vf s0 = vzero();
  int64_t i = 0;
  for (; i < vfull(n); i += W) s0 = vadd(s0, vload(a + i));
  float s = vhsum(s0);
  for (; i < n; i++) s += a[i];
  return s;
}

// x, out: [N, C]; mean, rstd: [N]; var is the biased (1/C) variance, computed in two passes.
static void layerNormForward(float* out, float* mean, float* rstd, const float* x, const float* w, const float* b,
                             int64_t N, int64_t C, float eps) {
  for (int64_t n = 0; n < N; n++) {
    const float* xr = x + n * C;
    float* o = out + n * C;
    const float mu = sum(xr, C) / (float)C;
    vf vmu = vset1(mu), acc = vzero();
    int64_t i = 0;
    for (; i < vfull(C); i += W) {
      vf d = vsub(vload(xr + i), vmu);
      acc = vfma(d, d, acc);
    }
    float var = vhsum(acc);
    for (; i < C; i++) var += (xr[i] - mu) * (xr[i] - mu);
    const float rs = 1.0f / sqrtf(var / (float)C + eps);
    mean[n] = mu;
    rstd[n] = rs;
    const vf vrs = vset1(rs);
    for (i = 0; i < vfull(C); i += W)
      vstore(o + i, vfma(vmul(vsub(vload(xr + i), vmu), vrs), vload(w + i), vload(b + i)));
    for (; i < C; i++) o[i] = (xr[i] - mu) * rs * w[i] + b[i];
  }
}

// dx += rstd * (g - mean(g) - norm * mean(g * norm)), g = w * dOut, norm = (x - mean) * rstd;
// dw += dOut * norm; db += dOut.
static void layerNormBackward(float* dx, float* dw, float* db, const float* dOut, const float* x, const float* w,
                              const float* mean, const float* rstd, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; n++) {
    const float* xr = x + n * C;
    const float* d = dOut + n * C;
    float* dxr = dx + n * C;
    const float mu = mean[n], rs = rstd[n];
    const vf vmu = vset1(mu), vrs = vset1(rs);
    vf ag = vzero(), agn = vzero();
    int64_t i = 0;
    for (; i < vfull(C); i += W) {
      vf g = vmul(vload(w + i), vload(d + i));
      vf nm = vmul(vsub(vload(xr + i), vmu), vrs);
      ag = vadd(ag, g);
      agn = vfma(g, nm, agn);
    }
    float sg = vhsum(ag), sgn = vhsum(agn);
    for (; i < C; i++) {
      const float g = w[i] * d[i], nm = (xr[i] - mu) * rs;
      sg += g;
      sgn += g * nm;
    }
    const float mg = sg / (float)C, mgn = sgn / (float)C;
    const vf vmg = vset1(mg), vmgn = vset1(mgn);
    for (i = 0; i < vfull(C); i += W) {
      vf dv = vload(d + i);
      vf nm = vmul(vsub(vload(xr + i), vmu), vrs);
      vf g = vmul(vload(w + i), dv);
      vf t = vfnma(nm, vmgn, vsub(g, vmg));
      vstore(dxr + i, vfma(vrs, t, vload(dxr + i)));
      vstore(dw + i, vfma(dv, nm, vload(dw + i)));
      vstore(db + i, vadd(vload(db + i), dv));
    }
    for (; i < C; i++) {
      const float nm = (xr[i] - mu) * rs, g = w[i] * d[i];
      dxr[i] += rs * (g - mg - nm * mgn);
      dw[i] += d[i] * nm;
      db[i] += d[i];
    }
  }
}

// out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps)
static void rmsNormForward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps) {
  for (int64_t n = 0; n < N; n++) {
    const float* xr = x + n * C;
    float* o = out + n * C;
    const float rs = 1.0f / sqrtf(dot(xr, xr, C) / (float)C + eps);
    rstd[n] = rs;
    const vf vrs = vset1(rs);
    int64_t i = 0;
    for (; i < vfull(C); i += W) vstore(o + i, vmul(vmul(vload(xr + i), vrs), vload(w + i)));
    for (; i < C; i++) o[i] = xr[i] * rs * w[i];
  }
}

// dx += rstd * (g - x * rstd^2 * mean(g * x)), g = w * dOut;  dw += dOut * x * rstd
static void rmsNormBackward(float* dx, float* dw, const float* dOut, const float* x, const float* w,
                            const float* rstd, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; n++) {
    const float* xr = x + n * C;
    const float* d = dOut + n * C;
    float* dxr = dx + n * C;
    const float rs = rstd[n];
    vf acc = vzero();
    int64_t i = 0;
    for (; i < vfull(C); i += W) acc = vfma(vmul(vload(w + i), vload(d + i)), vload(xr + i), acc);
    float sgx = vhsum(acc);
    for (; i < C; i++) sgx += w[i] * d[i] * xr[i];
    const float k = rs * rs * sgx / (float)C;
    const vf vrs = vset1(rs), vk = vset1(k);
    for (i = 0; i < vfull(C); i += W) {
      vf dv = vload(d + i), xv = vload(xr + i);
      vf g = vmul(vload(w + i), dv);
      vstore(dxr + i, vfma(vrs, vfnma(xv, vk, g), vload(dxr + i)));
      vstore(dw + i, vfma(vmul(dv, xv), vrs, vload(dw + i)));
    }
    for (; i < C; i++) {
      dxr[i] += rs * (w[i] * d[i] - xr[i] * k);
      dw[i] += d[i] * xr[i] * rs;
    }
  }
}

static void attnDelta(float* delta, const float* dOut, const float* out, int64_t rows, int64_t D) {
  for (int64_t r = 0; r < rows; r++) delta[r] = dot(dOut + r * D, out + r * D, D);
}

// lse = max + log1p(exp(min - max)), out = exp(lse1 - lse) out + exp(lse2 - lse) out2; the
// weights in float64. lse2 = -inf leaves the row alone; lse1 = -inf takes (out2, lse2).
static void attnMerge(float* out, float* lse, const float* out2, const float* lse2, int64_t rows, int64_t D) {
  for (int64_t r = 0; r < rows; r++) {
    const double l1 = lse[r], l2 = lse2[r];
    float* o = out + r * D;
    const float* o2 = out2 + r * D;
    if (l2 == -__builtin_inf()) continue;
    if (l1 == -__builtin_inf()) {
      lse[r] = (float)l2;
      memcpy(o, o2, sizeof(float) * D);
      continue;
    }
    const double mx = l1 > l2 ? l1 : l2, mn = l1 > l2 ? l2 : l1;
    const double l = mx + log1p(exp(mn - mx));
    const float f1 = (float)exp(l1 - l), f2 = (float)exp(l2 - l);
    const vf w1 = vset1(f1), w2 = vset1(f2);
    int64_t i = 0;
    for (; i < vfull(D); i += W) vstore(o + i, vfma(w1, vload(o + i), vmul(w2, vload(o2 + i))));
    for (; i < D; i++) o[i] = f1 * o[i] + f2 * o2[i];
    lse[r] = (float)l;
  }
}

void register_rows_norm(KernelTable& t) {
  t.layerNormForward = layerNormForward;
  t.layerNormBackward = layerNormBackward;
  t.rmsNormForward = rmsNormForward;
  t.rmsNormBackward = rmsNormBackward;
  t.attnDelta = attnDelta;
  t.attnMerge = attnMerge;
}

}  // namespace SP_NS
