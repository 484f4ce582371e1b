// N-API glue: positional arguments from src/kernels/native/index.ts, checked here (a wrong size
// must be a RangeError, never a write past the end of a buffer), then dispatched to the function
// table of the selected ISA. Buffers are used in place: the pointer from napi_get_typedarray_info
// already includes the view's byte offset and may point into a SharedArrayBuffer.
#include <math.h>
#include <sched.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <string>
#include <vector>

#include <napi.h>

#include "api.h"
#include "runtime.h"

namespace {

bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
const KernelTable* best_table() {
  __builtin_cpu_init();
  if (has_avx512()) return sp_avx512::table();
  if (has_avx2()) return sp_avx2::table();
  return sp_scalar::table();
}
// Per JS thread, like the thread count: setIsa in one worker does not change another.
thread_local const KernelTable* tl_table = nullptr;
const KernelTable* T() {
  if (!tl_table) tl_table = best_table();
  return tl_table;
}

using Info = Napi::CallbackInfo;

[[noreturn]] void range_error(const Info& info, const std::string& msg) {
  throw Napi::RangeError::New(info.Env(), msg);
}
bool absent(const Info& info, size_t i) { return i >= info.Length() || info[i].IsUndefined() || info[i].IsNull(); }

int64_t I(const Info& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != floor(v) || v > 9.0e15) range_error(info, std::string(what) + " must be a non-negative integer, got " + std::to_string(v));
  return (int64_t)v;
}
double Num(const Info& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

template <typename E, napi_typedarray_type K>
E* typed(const Info& info, size_t i, int64_t need, const char* what, bool optional) {
  if (optional && absent(info, i)) return nullptr;
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != K)
    throw Napi::TypeError::New(info.Env(), std::string(what) + (K == napi_float32_array ? " must be a Float32Array" : " must be an Int32Array"));
  auto a = info[i].As<Napi::TypedArrayOf<E>>();
  if ((int64_t)a.ElementLength() < need)
    range_error(info, std::string(what) + ": buffer has " + std::to_string(a.ElementLength()) + " elements, needs " + std::to_string(need));
  return a.Data();
}
float* F(const Info& info, size_t i, int64_t need, const char* what, bool optional = false) {
  return typed<float, napi_float32_array>(info, i, need, what, optional);
}
int32_t* I32(const Info& info, size_t i, int64_t need, const char* what) {
  return typed<int32_t, napi_int32_array>(info, i, need, what, false);
}
int64_t len(const Info& info, size_t i, const char* what) {
  F(info, i, 0, what);
  return (int64_t)info[i].As<Napi::TypedArray>().ElementLength();
}

// matmulForward(out, x, w, bias|null, N, K, M)
Napi::Value MatmulForward(const Info& info) {
  const int64_t N = I(info, 4, "N"), K = I(info, 5, "K"), M = I(info, 6, "M");
  T()->matmulForward(F(info, 0, N * M, "out"), F(info, 1, N * K, "x"), F(info, 2, M * K, "weight"),
                     F(info, 3, M, "bias", true), N, K, M);
  return info.Env().Undefined();
}
// matmulBackward(dx|null, dw|null, db|null, dOut, x, w, N, K, M, overwrite)
Napi::Value MatmulBackward(const Info& info) {
  const int64_t N = I(info, 6, "N"), K = I(info, 7, "K"), M = I(info, 8, "M");
  const bool overwrite = info[9].ToBoolean().Value();
  T()->matmulBackward(F(info, 0, N * K, "dx", true), F(info, 1, M * K, "dWeight", true), F(info, 2, M, "dBias", true),
                      F(info, 3, N * M, "dOut"), F(info, 4, N * K, "x"), F(info, 5, M * K, "weight"), N, K, M,
                      !overwrite);
  return info.Env().Undefined();
}
// layerNormForward(out, mean, rstd, x, w, b, N, C, eps)
Napi::Value LayerNormForward(const Info& info) {
  const int64_t N = I(info, 6, "N"), C = I(info, 7, "C");
  T()->layerNormForward(F(info, 0, N * C, "out"), F(info, 1, N, "mean"), F(info, 2, N, "rstd"), F(info, 3, N * C, "x"),
                        F(info, 4, C, "weight"), F(info, 5, C, "bias"), N, C, (float)Num(info, 8, "eps"));
  return info.Env().Undefined();
}
// layerNormBackward(dx, dw, db, dOut, x, w, mean, rstd, N, C)
Napi::Value LayerNormBackward(const Info& info) {
  const int64_t N = I(info, 8, "N"), C = I(info, 9, "C");
  T()->layerNormBackward(F(info, 0, N * C, "dx"), F(info, 1, C, "dWeight"), F(info, 2, C, "dBias"),
                         F(info, 3, N * C, "dOut"), F(info, 4, N * C, "x"), F(info, 5, C, "weight"),
                         F(info, 6, N, "mean"), F(info, 7, N, "rstd"), N, C);
  return info.Env().Undefined();
}
// rmsNormForward(out, rstd, x, w, N, C, eps)
Napi::Value RmsNormForward(const Info& info) {
  const int64_t N = I(info, 4, "N"), C = I(info, 5, "C");
  T()->rmsNormForward(F(info, 0, N * C, "out"), F(info, 1, N, "rstd"), F(info, 2, N * C, "x"), F(info, 3, C, "weight"),
                      N, C, (float)Num(info, 6, "eps"));
  return info.Env().Undefined();
}
// rmsNormBackward(dx, dw, dOut, x, w, rstd, N, C)
Napi::Value RmsNormBackward(const Info& info) {
  const int64_t N = I(info, 6, "N"), C = I(info, 7, "C");
  T()->rmsNormBackward(F(info, 0, N * C, "dx"), F(info, 1, C, "dWeight"), F(info, 2, N * C, "dOut"),
                       F(info, 3, N * C, "x"), F(info, 4, C, "weight"), F(info, 5, N, "rstd"), N, C);
  return info.Env().Undefined();
}
// geluForward(out, x, n) / geluBackward(dx, dOut, x, n, overwrite)
Napi::Value GeluForward(const Info& info) {
  const int64_t n = I(info, 2, "n");
  T()->geluForward(F(info, 0, n, "out"), F(info, 1, n, "x"), n);
  return info.Env().Undefined();
}
Napi::Value GeluBackward(const Info& info) {
  const int64_t n = I(info, 3, "n");
  T()->geluBackward(F(info, 0, n, "dx"), F(info, 1, n, "dOut"), F(info, 2, n, "x"), n, !info[4].ToBoolean().Value());
  return info.Env().Undefined();
}
// swigluForward(out, x, N, F) / swigluBackward(dx, dOut, x, N, F, overwrite)
Napi::Value SwigluForward(const Info& info) {
  const int64_t N = I(info, 2, "N"), Fd = I(info, 3, "F");
  T()->swigluForward(F(info, 0, N * Fd, "out"), F(info, 1, 2 * N * Fd, "x"), N, Fd);
  return info.Env().Undefined();
}
Napi::Value SwigluBackward(const Info& info) {
  const int64_t N = I(info, 3, "N"), Fd = I(info, 4, "F");
  T()->swigluBackward(F(info, 0, 2 * N * Fd, "dx"), F(info, 1, N * Fd, "dOut"), F(info, 2, 2 * N * Fd, "x"), N, Fd,
                      !info[5].ToBoolean().Value());
  return info.Env().Undefined();
}
// embeddingForward(out, tokens, weight, N, C) / embeddingBackward(dWeight, dOut, tokens, N, C)
int64_t check_tokens(const Info& info, const int32_t* tok, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (tok[n] < 0 || tok[n] >= V) range_error(info, "token " + std::to_string(tok[n]) + " at " + std::to_string(n) + " is outside [0, " + std::to_string(V) + ")");
  return V;
}
Napi::Value EmbeddingForward(const Info& info) {
  const int64_t N = I(info, 3, "N"), C = I(info, 4, "C");
  float* out = F(info, 0, N * C, "out");
  const int32_t* tok = I32(info, 1, N, "tokens");
  const float* w = F(info, 2, 0, "weight");
  check_tokens(info, tok, N, C ? len(info, 2, "weight") / C : 0);
  for (int64_t n = 0; n < N; n++) memcpy(out + n * C, w + (int64_t)tok[n] * C, sizeof(float) * C);
  return info.Env().Undefined();
}
Napi::Value EmbeddingBackward(const Info& info) {
  const int64_t N = I(info, 3, "N"), C = I(info, 4, "C");
  float* dw = F(info, 0, 0, "dWeight");
  const float* d = F(info, 1, N * C, "dOut");
  const int32_t* tok = I32(info, 2, N, "tokens");
  check_tokens(info, tok, N, C ? len(info, 0, "dWeight") / C : 0);
  for (int64_t n = 0; n < N; n++) T()->axpy(dw + (int64_t)tok[n] * C, d + n * C, C, 1.0f);
  return info.Env().Undefined();
}
// cos/sin table of rope, [2][T][D/2], for the last (positions, D, base) seen on this JS thread.
// Every rope call of a step (q and k of each layer, forward and backward) has the same positions,
// and the float64 trig (T*D/2 cos and sin) was most of a call's time.
struct RopeTable {
  std::vector<int32_t> pos;
  int64_t D = 0;
  double base = 0;
  std::vector<float> cs;
};
thread_local RopeTable tl_rope;
const float* rope_table(const int32_t* pos, int64_t Tn, int64_t D, double base) {
  RopeTable& r = tl_rope;
  const int64_t h2 = D / 2;
  if (r.D == D && r.base == base && (int64_t)r.pos.size() == Tn && memcmp(r.pos.data(), pos, sizeof(int32_t) * Tn) == 0)
    return r.cs.data();
  r.pos.assign(pos, pos + Tn);
  r.D = D;
  r.base = base;
  r.cs.resize((size_t)(2 * Tn * h2 + 1));
  float* cs = r.cs.data();
  // angles in float64 (positions reach 1e5+, float32 angles would be off by whole radians)
  for (int64_t j = 0; j < h2; j++) {
    const double f = pow(base, -2.0 * (double)j / (double)D);
    for (int64_t t = 0; t < Tn; t++) {
      const double ang = (double)pos[t] * f;
      cs[t * h2 + j] = (float)cos(ang);
      cs[(Tn + t) * h2 + j] = (float)sin(ang);
    }
  }
  return cs;
}
// rope(out, x, pos, B, T, H, D, base, backward, overwrite): forward out = R x; backward out += R^T x
// (overwrite: out = R^T x)
Napi::Value Rope(const Info& info) {
  const int64_t B = I(info, 3, "B"), Tn = I(info, 4, "T"), H = I(info, 5, "H"), D = I(info, 6, "D");
  const double base = Num(info, 7, "base");
  const bool backward = info[8].ToBoolean(), overwrite = info[9].ToBoolean();
  if (D % 2) range_error(info, "rope: D must be even, got " + std::to_string(D));
  const int64_t n = B * Tn * H * D;
  float* out = F(info, 0, n, backward ? "dx" : "out");
  const float* x = F(info, 1, n, backward ? "dOut" : "x");
  const int32_t* pos = I32(info, 2, Tn, "pos");
  T()->rope(out, x, rope_table(pos, Tn, D, base), B, Tn, H, D, backward ? -1.0f : 1.0f, backward && !overwrite);
  return info.Env().Undefined();
}
// crossEntropyForward(losses, lse, logits, targets, N, V, ignore) -> counted rows
void check_targets(const Info& info, const int32_t* t, int64_t N, int64_t V, int32_t ignore) {
  for (int64_t n = 0; n < N; n++)
    if (t[n] != ignore && (t[n] < 0 || t[n] >= V)) range_error(info, "target " + std::to_string(t[n]) + " at " + std::to_string(n) + " is outside [0, " + std::to_string(V) + ")");
}
Napi::Value CrossEntropyForward(const Info& info) {
  const int64_t N = I(info, 4, "N"), V = I(info, 5, "V");
  const int32_t ignore = (int32_t)Num(info, 6, "ignoreIndex");
  const int32_t* tg = I32(info, 3, N, "targets");
  check_targets(info, tg, N, V, ignore);
  T()->crossEntropyForward(F(info, 0, N, "losses"), F(info, 1, N, "lse"), F(info, 2, N * V, "logits"), tg, N, V, ignore);
  int64_t count = 0;
  for (int64_t n = 0; n < N; n++) count += tg[n] != ignore;
  return Napi::Number::New(info.Env(), (double)count);
}
// crossEntropyBackward(dLogits, logits, lse, targets, N, V, ignore, scale)
Napi::Value CrossEntropyBackward(const Info& info) {
  const int64_t N = I(info, 4, "N"), V = I(info, 5, "V");
  const int32_t ignore = (int32_t)Num(info, 6, "ignoreIndex");
  const int32_t* tg = I32(info, 3, N, "targets");
  check_targets(info, tg, N, V, ignore);
  T()->crossEntropyBackward(F(info, 0, N * V, "dLogits"), F(info, 1, N * V, "logits"), F(info, 2, N, "lse"), tg, N, V,
                            ignore, (float)Num(info, 7, "scale"));
  return info.Env().Undefined();
}
// adamwStep(param, m, v, grad, n, lr, beta1, beta2, eps, weightDecay, step)
Napi::Value AdamwStep(const Info& info) {
  const int64_t n = I(info, 4, "n");
  const double b1 = Num(info, 6, "beta1"), b2 = Num(info, 7, "beta2"), step = Num(info, 10, "step");
  T()->adamw(F(info, 0, n, "param"), F(info, 1, n, "m"), F(info, 2, n, "v"), F(info, 3, n, "grad"), n,
             (float)Num(info, 5, "lr"), (float)b1, (float)b2, (float)Num(info, 8, "eps"),
             (float)Num(info, 9, "weightDecay"), (float)(1.0 - pow(b1, step)), (float)(1.0 - pow(b2, step)));
  return info.Env().Undefined();
}
Napi::Value SumSquares(const Info& info) {
  const int64_t n = len(info, 0, "x");
  return Napi::Number::New(info.Env(), T()->sumSquares(F(info, 0, n, "x"), n));
}
Napi::Value Scale(const Info& info) {
  const int64_t n = len(info, 0, "x");
  T()->scale(F(info, 0, n, "x"), n, (float)Num(info, 1, "s"));
  return info.Env().Undefined();
}
Napi::Value Axpy(const Info& info) {
  const int64_t n = len(info, 0, "y");
  T()->axpy(F(info, 0, n, "y"), F(info, 1, n, "x"), n, (float)Num(info, 2, "a"));
  return info.Env().Undefined();
}

// dst.set(src) for typed arrays of equal byte length, any element type, any (shared) buffer: V8
// copies SharedArrayBuffer memory word by word; libc's memmove uses wide and non-temporal stores.
// Start of a typed array's bytes (works for SharedArrayBuffer views, unlike ArrayBuffer().Data()).
uint8_t* bytes_of(const Info& info, size_t i, size_t* n) {
  napi_typedarray_type t;
  void* data = nullptr;
  napi_value ab;
  size_t length = 0, offset = 0;
  if (napi_get_typedarray_info(info.Env(), info[i], &t, &length, &data, &ab, &offset) != napi_ok) throw Napi::TypeError::New(info.Env(), "copyBytes: not a typed array");
  *n = info[i].As<Napi::TypedArray>().ByteLength();
  return static_cast<uint8_t*>(data);
}
Napi::Value CopyBytes(const Info& info) {
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "copyBytes(dst, src): both must be typed arrays");
  size_t nd = 0, ns = 0;
  uint8_t* dp = bytes_of(info, 0, &nd);
  const uint8_t* sp = bytes_of(info, 1, &ns);
  if (nd != ns) range_error(info, "copyBytes: dst has " + std::to_string(nd) + " bytes, src " + std::to_string(ns));
  if (nd > 0) memmove(dp, sp, nd);
  return info.Env().Undefined();
}

// dst[i] += src[i] for two Float32Arrays or two Float64Arrays of one length (the threads
// transport's reductions: plain IEEE adds, so the result is bitwise the JavaScript loop's).
template <typename E>
static void add_into(E* d, const E* s, size_t n) {
  for (size_t i = 0; i < n; i++) d[i] += s[i];
}
Napi::Value AddInto(const Info& info) {
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "addInto(dst, src): both must be typed arrays");
  const napi_typedarray_type t = info[0].As<Napi::TypedArray>().TypedArrayType();
  if (t != info[1].As<Napi::TypedArray>().TypedArrayType() || (t != napi_float32_array && t != napi_float64_array))
    throw Napi::TypeError::New(info.Env(), "addInto: dst and src must both be Float32Array or both Float64Array");
  size_t nd = 0, ns = 0;
  uint8_t* dp = bytes_of(info, 0, &nd);
  const uint8_t* sp = bytes_of(info, 1, &ns);
  if (nd != ns) range_error(info, "addInto: dst has " + std::to_string(nd) + " bytes, src " + std::to_string(ns));
  if (t == napi_float32_array) add_into(reinterpret_cast<float*>(dp), reinterpret_cast<const float*>(sp), nd / 4);
  else add_into(reinterpret_cast<double*>(dp), reinterpret_cast<const double*>(sp), nd / 8);
  return info.Env().Undefined();
}


// Raw reads of a peer's memory for the threads transport's one-copy path: worker threads share
// the process's address space, so a rank can read another rank's ordinary (non-shared) buffer by
// address while that rank waits inside the collective. addressOf(ta) publishes the address;
// rawRead(dst, addr, add, ctl, readingIdx, closedIdx, seq, abortIdx) copies (add = false) or adds
// (float32/float64) dst.byteLength bytes from addr into dst, but only while the owner still offers
// the buffer: it counts itself in ctl[readingIdx], then checks that ctl[closedIdx] < seq and
// ctl[abortIdx] == 0. The owner marks closedIdx before it stops offering the buffer and waits for
// the count to drop, and the launcher sets abortIdx and waits for every count before it terminates
// workers (Dekker-style: sequentially consistent increments and loads on both sides). Doing the
// count, check and copy in one native call means a worker being terminated cannot leave the
// count raised. Returns false (nothing read) when the buffer is no longer offered.
// The protocol above around one read: info[i .. i + 4] = ctl, readingIdx, closedIdx, seq, abortIdx.
// Runs read() only while the owner still offers its buffer; returns whether it ran.
template <class Read>
static bool while_offered(const Info& info, size_t i, const char* what, Read read) {
  size_t nc = 0;
  int32_t* ctl = reinterpret_cast<int32_t*>(bytes_of(info, i, &nc));
  const int64_t ri = info[i + 1].As<Napi::Number>().Int64Value(), ci = info[i + 2].As<Napi::Number>().Int64Value();
  const int32_t seq = info[i + 3].As<Napi::Number>().Int32Value();
  const int64_t ai = info[i + 4].As<Napi::Number>().Int64Value();
  const int64_t ints = (int64_t)(nc / 4);
  if (ri < 0 || ri >= ints || ci < 0 || ci >= ints || ai < 0 || ai >= ints) range_error(info, std::string(what) + ": control index out of range");
  __atomic_fetch_add(&ctl[ri], 1, __ATOMIC_SEQ_CST);
  const bool open = __atomic_load_n(&ctl[ci], __ATOMIC_SEQ_CST) < seq && __atomic_load_n(&ctl[ai], __ATOMIC_SEQ_CST) == 0;
  if (open) read();
  __atomic_fetch_sub(&ctl[ri], 1, __ATOMIC_SEQ_CST);
  return open;
}
Napi::Value AddressOf(const Info& info) {
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "addressOf(typedArray)");
  size_t n = 0;
  uint8_t* p = bytes_of(info, 0, &n);
  return Napi::Number::New(info.Env(), (double)(uintptr_t)p);
}
// allocHuge(bytes): a zeroed ArrayBuffer of `bytes` on its own mapping, 2 MiB-aligned and advised
// for transparent huge pages before first touch (adviseHugePages cannot fully cover a buffer that
// malloc placed off a 2 MiB boundary or already zeroed); unmapped when the buffer is collected.
// Null where the platform has no such mapping.
Napi::Value AllocHuge(const Info& info) {
  const double req = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(req >= 0) || req > 1e15) throw Napi::RangeError::New(info.Env(), "allocHuge(bytes): bytes must be a non-negative number");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t huge = (size_t)2 << 20, bytes = (size_t)req;
  const size_t len = (bytes + huge - 1) / huge * huge;
  if (len == 0) return info.Env().Null();
  void* raw = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return info.Env().Null();
  const uintptr_t base = (uintptr_t)raw, start = (base + huge - 1) / huge * huge;
  if (start > base) munmap(raw, start - base);
  if (base + len + huge > start + len) munmap((void*)(start + len), base + len + huge - (start + len));
  madvise((void*)start, len, MADV_HUGEPAGE);
  return Napi::ArrayBuffer::New(info.Env(), (void*)start, bytes, [](Napi::Env, void* p, size_t* n) { munmap(p, *n); delete n; }, new size_t(len));
#else
  return info.Env().Null();
#endif
}
// adviseHugeRange(view, bytes): MADV_HUGEPAGE over the whole 2 MiB pages inside [data of view,
// + bytes) — a growable SharedArrayBuffer's reservation, say (the threads transport's arenas,
// which the model's attention tensors live in on Ulysses' shared path), so that pages faulted in
// later come as huge pages. Ranges outside any mapping are ignored by the kernel. Returns whether
// madvise accepted the range.
Napi::Value AdviseHugeRange(const Info& info) {
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "adviseHugeRange(typedArray, bytes)");
  size_t n = 0;
  uint8_t* p = bytes_of(info, 0, &n);
  const double req = info[1].As<Napi::Number>().DoubleValue();
  if (!(req >= 0) || req > 1e15) throw Napi::RangeError::New(info.Env(), "adviseHugeRange: bytes must be a non-negative number");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20, b = (uintptr_t)p, e = b + (uintptr_t)req;
  const uintptr_t s = (b + huge - 1) / huge * huge, t = e / huge * huge;
  return Napi::Boolean::New(info.Env(), t > s && madvise((void*)s, t - s, MADV_HUGEPAGE) == 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}
Napi::Value RawRead(const Info& info) {
  if (info.Length() < 8 || !info[0].IsTypedArray() || !info[3].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), "rawRead(dst, addr, add, ctl, readingIdx, closedIdx, seq, abortIdx)");
  size_t nd = 0;
  uint8_t* dp = bytes_of(info, 0, &nd);
  const uint8_t* sp = reinterpret_cast<const uint8_t*>((uintptr_t)info[1].As<Napi::Number>().DoubleValue());
  const bool add = info[2].ToBoolean().Value();
  const napi_typedarray_type t = info[0].As<Napi::TypedArray>().TypedArrayType();
  if (add && t != napi_float32_array && t != napi_float64_array) throw Napi::TypeError::New(info.Env(), "rawRead: add needs a Float32Array or Float64Array");
  const bool open = while_offered(info, 3, "rawRead", [&] {
    if (nd == 0) return;
    if (!add) memcpy(dp, sp, nd);
    else if (t == napi_float32_array) add_into(reinterpret_cast<float*>(dp), reinterpret_cast<const float*>(sp), nd / 4);
    else add_into(reinterpret_cast<double*>(dp), reinterpret_cast<const double*>(sp), nd / 8);
  });
  return Napi::Boolean::New(info.Env(), open);
}


// Row copies of allToAllRows (comm/rows.ts copyRowsJs is the reference): for r < n, dst row
// (dRows ? dRows[r] : r) = (add: +=) src row (sRows ? sRows[r] : r), rows of rowBytes bytes. Rows
// go in order of r, so repeated destination rows sum in source order, as the reference does.
// Runs of rows that follow each other on both sides (a token's heads of one destination, say)
// go as one block (Ulysses' [2048, 8, 32] exchange at P = 2: 4-row runs, 10 % faster in a scratch
// C++ harness that is not recorded in bench/results).
static void copy_rows(uint8_t* dp, const int32_t* dr, const uint8_t* sp, const int32_t* sr, int64_t n, size_t rowBytes,
                      bool add, napi_typedarray_type t) {
  for (int64_t r = 0; r < n;) {
    const int64_t d0 = dr ? dr[r] : r, s0 = sr ? sr[r] : r;
    int64_t e = r + 1;
    while (e < n && (dr ? dr[e] : e) == d0 + (e - r) && (sr ? sr[e] : e) == s0 + (e - r)) e++;
    uint8_t* d = dp + (size_t)d0 * rowBytes;
    const uint8_t* s = sp + (size_t)s0 * rowBytes;
    const size_t bytes = (size_t)(e - r) * rowBytes;
    if (!add) memcpy(d, s, bytes);
    else if (t == napi_float32_array) add_into(reinterpret_cast<float*>(d), reinterpret_cast<const float*>(s), bytes / 4);
    else add_into(reinterpret_cast<double*>(d), reinterpret_cast<const double*>(s), bytes / 8);
    r = e;
  }
}

// Checks one side of a row copy: an Int32Array of n row indices (or null: rows 0..n-1) that all
// lie within `bytes` (bytes = SIZE_MAX: a peer's address, checked by the transport). Returns the
// index array or nullptr.
static const int32_t* row_side(const Info& info, size_t i, int64_t n, size_t rowBytes, size_t bytes, const char* what) {
  if (info[i].IsNull() || info[i].IsUndefined()) {
    if (bytes != SIZE_MAX && (size_t)n * rowBytes > bytes) range_error(info, std::string("copyRows: ") + what + " has fewer than n rows");
    return nullptr;
  }
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(info.Env(), std::string("copyRows: ") + what + " rows must be an Int32Array or null");
  size_t nb = 0;
  const int32_t* idx = reinterpret_cast<const int32_t*>(bytes_of(info, i, &nb));
  if ((int64_t)(nb / 4) < n) range_error(info, std::string("copyRows: ") + what + " rows has fewer than n entries");
  for (int64_t r = 0; bytes != SIZE_MAX && r < n; r++)
    if (idx[r] < 0 || (size_t)idx[r] * rowBytes + rowBytes > bytes) range_error(info, std::string("copyRows: ") + what + " row out of range");
  return idx;
}

// Element type and row bytes of a row copy into dst; adds need float32/float64.
static size_t row_bytes(const Info& info, napi_typedarray_type t, int64_t row, bool add) {
  if (row < 1) range_error(info, "copyRows: row must be positive");
  if (add && t != napi_float32_array && t != napi_float64_array) throw Napi::TypeError::New(info.Env(), "copyRows: add needs a Float32Array or Float64Array");
  const size_t bpe = (t == napi_float64_array) ? 8 : (t == napi_float32_array || t == napi_int32_array || t == napi_uint32_array) ? 4 : 1;
  return (size_t)row * bpe;
}

// copyRows(dst, dRows, src, sRows, n, row, add): both typed arrays of one type; every row in range.
Napi::Value CopyRows(const Info& info) {
  if (info.Length() < 7 || !info[0].IsTypedArray() || !info[2].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "copyRows(dst, dRows, src, sRows, n, row, add)");
  const napi_typedarray_type t = info[0].As<Napi::TypedArray>().TypedArrayType();
  if (t != info[2].As<Napi::TypedArray>().TypedArrayType()) throw Napi::TypeError::New(info.Env(), "copyRows: dst and src differ in type");
  const int64_t n = info[4].As<Napi::Number>().Int64Value();
  const bool add = info[6].ToBoolean().Value();
  const size_t rb = row_bytes(info, t, info[5].As<Napi::Number>().Int64Value(), add);
  size_t nd = 0, ns = 0;
  uint8_t* dp = bytes_of(info, 0, &nd);
  const uint8_t* sp = bytes_of(info, 2, &ns);
  const int32_t* dr = row_side(info, 1, n, rb, nd, "dst");
  const int32_t* sr = row_side(info, 3, n, rb, ns, "src");
  copy_rows(dp, dr, sp, sr, n, rb, add, t);
  return info.Env().Undefined();
}

// rawReadRows(dst, dRows, addr, sRows, n, row, add, ctl, readingIdx, closedIdx, seq, abortIdx):
// copyRows from a peer's address under rawRead's protocol (above). The transport has checked that
// the rows lie within what the peer offers.
Napi::Value RawReadRows(const Info& info) {
  if (info.Length() < 12 || !info[0].IsTypedArray() || !info[7].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), "rawReadRows(dst, dRows, addr, sRows, n, row, add, ctl, readingIdx, closedIdx, seq, abortIdx)");
  const napi_typedarray_type t = info[0].As<Napi::TypedArray>().TypedArrayType();
  const int64_t n = info[4].As<Napi::Number>().Int64Value();
  const bool add = info[6].ToBoolean().Value();
  const size_t rb = row_bytes(info, t, info[5].As<Napi::Number>().Int64Value(), add);
  size_t nd = 0;
  uint8_t* dp = bytes_of(info, 0, &nd);
  const int32_t* dr = row_side(info, 1, n, rb, nd, "dst");
  const int32_t* sr = row_side(info, 3, n, rb, SIZE_MAX, "src");
  const uint8_t* sp = reinterpret_cast<const uint8_t*>((uintptr_t)info[2].As<Napi::Number>().DoubleValue());
  const bool open = while_offered(info, 7, "rawReadRows", [&] { copy_rows(dp, dr, sp, sr, n, rb, add, t); });
  return Napi::Boolean::New(info.Env(), open);
}
}  // namespace

// attention and control functions live in addon_attn.cc
void init_attn(Napi::Env env, Napi::Object exports);
const KernelTable* sp_current_table() { return T(); }
void sp_release_rope_table() { tl_rope = RopeTable(); }
void sp_set_table(const KernelTable* t) { tl_table = t; }
bool sp_isa_supported(const std::string& name) {
  __builtin_cpu_init();
  return name == "scalar" || (name == "avx2" && has_avx2()) || (name == "avx512" && has_avx512());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#define SP_EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, fn, name))
  SP_EXPORT("matmulForward", MatmulForward);
  SP_EXPORT("matmulBackward", MatmulBackward);
  SP_EXPORT("layerNormForward", LayerNormForward);
  SP_EXPORT("layerNormBackward", LayerNormBackward);
  SP_EXPORT("rmsNormForward", RmsNormForward);
  SP_EXPORT("rmsNormBackward", RmsNormBackward);
  SP_EXPORT("geluForward", GeluForward);
  SP_EXPORT("geluBackward", GeluBackward);
  SP_EXPORT("swigluForward", SwigluForward);
  SP_EXPORT("swigluBackward", SwigluBackward);
  SP_EXPORT("embeddingForward", EmbeddingForward);
  SP_EXPORT("embeddingBackward", EmbeddingBackward);
  SP_EXPORT("rope", Rope);
  SP_EXPORT("crossEntropyForward", CrossEntropyForward);
  SP_EXPORT("crossEntropyBackward", CrossEntropyBackward);
  SP_EXPORT("adamwStep", AdamwStep);
  SP_EXPORT("sumSquares", SumSquares);
  SP_EXPORT("scale", Scale);
  SP_EXPORT("axpy", Axpy);
  SP_EXPORT("copyBytes", CopyBytes);
  SP_EXPORT("addInto", AddInto);
  SP_EXPORT("addressOf", AddressOf);
  SP_EXPORT("allocHuge", AllocHuge);
  SP_EXPORT("rawRead", RawRead);
  SP_EXPORT("adviseHugeRange", AdviseHugeRange);
  SP_EXPORT("copyRows", CopyRows);
  SP_EXPORT("rawReadRows", RawReadRows);
#undef SP_EXPORT
  init_attn(env, exports);
  return exports;
}

NODE_API_MODULE(seqpar_native, Init)
