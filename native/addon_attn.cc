// N-API glue, part 2: attention block kernels and the runtime controls (ISA, threads, pinning,
// FMA peak loop).
#include <sched.h>

#include <string>

#include <napi.h>

#include "api.h"
#include "runtime.h"

const KernelTable* sp_current_table();
void sp_set_table(const KernelTable* t);
bool sp_isa_supported(const std::string& name);
void sp_release_rope_table();

namespace {

using Info = Napi::CallbackInfo;

int64_t I(const Info& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != (double)(int64_t)v || v > 9.0e15)
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be a non-negative integer, got " + std::to_string(v));
  return (int64_t)v;
}
template <typename E, napi_typedarray_type K>
E* typed(const Info& info, size_t i, int64_t need, const char* what) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != K)
    throw Napi::TypeError::New(info.Env(), std::string(what) + (K == napi_float32_array ? " must be a Float32Array" : " must be an Int32Array"));
  auto a = info[i].As<Napi::TypedArrayOf<E>>();
  if ((int64_t)a.ElementLength() < need)
    throw Napi::RangeError::New(info.Env(), std::string(what) + ": buffer has " + std::to_string(a.ElementLength()) + " elements, needs " + std::to_string(need));
  return a.Data();
}
float* F(const Info& info, size_t i, int64_t need, const char* what) { return typed<float, napi_float32_array>(info, i, need, what); }

// Positions are compared as floats inside the kernels: they must stay below 2^24.
const int32_t* positions(const Info& info, size_t i, int64_t n, const char* what) {
  const int32_t* p = typed<int32_t, napi_int32_array>(info, i, n, what);
  for (int64_t t = 0; t < n; t++)
    if (p[t] >= (1 << 24)) throw Napi::RangeError::New(info.Env(), std::string(what) + ": position " + std::to_string(p[t]) + " >= 2^24 is not supported by the native backend");
  return p;
}

// Reads (B, Tq, Tk, H, G, D, scale, causal, windowLeft|undefined, windowRight|undefined[, h0, h1]) from index i.
AttnArgs dims(const Info& info, size_t i) {
  AttnArgs a{};
  a.B = I(info, i, "B");
  a.Tq = I(info, i + 1, "Tq");
  a.Tk = I(info, i + 2, "Tk");
  a.H = I(info, i + 3, "H");
  a.G = I(info, i + 4, "G");
  a.D = I(info, i + 5, "D");
  if (a.G == 0 || a.H % a.G != 0)
    throw Napi::RangeError::New(info.Env(), "attention: H (" + std::to_string(a.H) + ") must be a multiple of G (" + std::to_string(a.G) + ")");
  a.scale = (float)info[i + 6].As<Napi::Number>().DoubleValue();
  a.causal = info[i + 7].ToBoolean();
  a.hasLeft = info[i + 8].IsNumber();
  a.hasRight = info[i + 9].IsNumber();
  a.left = a.hasLeft ? (int64_t)info[i + 8].As<Napi::Number>().DoubleValue() : 0;
  a.right = a.hasRight ? (int64_t)info[i + 9].As<Napi::Number>().DoubleValue() : 0;
  // optional query head range [h0, h1) (default: all H)
  a.h0 = i + 10 < info.Length() && info[i + 10].IsNumber() ? I(info, i + 10, "h0") : 0;
  a.h1 = i + 11 < info.Length() && info[i + 11].IsNumber() ? I(info, i + 11, "h1") : a.H;
  if (a.h0 > a.h1 || a.h1 > a.H)
    throw Napi::RangeError::New(info.Env(), "attention: query heads [" + std::to_string(a.h0) + ", " + std::to_string(a.h1) + ") are not within [0, " + std::to_string(a.H) + ")");
  return a;
}

// attnForward(out, lse, q, k, v, qPos, kPos, B, Tq, Tk, H, G, D, scale, causal, left, right[, h0, h1])
Napi::Value AttnForward(const Info& info) {
  AttnArgs a = dims(info, 7);
  const int64_t nq = a.B * a.Tq * a.H * a.D, nk = a.B * a.Tk * a.G * a.D;
  a.out = F(info, 0, nq, "out");
  a.lse = F(info, 1, a.B * a.Tq * a.H, "lse");
  a.q = F(info, 2, nq, "q");
  a.k = F(info, 3, nk, "k");
  a.v = F(info, 4, nk, "v");
  a.qPos = positions(info, 5, a.Tq, "qPos");
  a.kPos = positions(info, 6, a.Tk, "kPos");
  sp_current_table()->attnForward(a);
  return info.Env().Undefined();
}
// attnBackward(dq, dk, dv, dOut, q, k, v, out, lse, delta, qPos, kPos, B, Tq, Tk, H, G, D, scale, causal, left, right[, h0, h1])
Napi::Value AttnBackward(const Info& info) {
  AttnArgs a = dims(info, 12);
  const int64_t nq = a.B * a.Tq * a.H * a.D, nk = a.B * a.Tk * a.G * a.D, nr = a.B * a.Tq * a.H;
  a.dq = F(info, 0, nq, "dq");
  a.dk = F(info, 1, nk, "dk");
  a.dv = F(info, 2, nk, "dv");
  a.dOut = F(info, 3, nq, "dOut");
  a.q = F(info, 4, nq, "q");
  a.k = F(info, 5, nk, "k");
  a.v = F(info, 6, nk, "v");
  a.out = F(info, 7, nq, "out");
  a.lse = F(info, 8, nr, "lse");
  a.delta = F(info, 9, nr, "delta");
  a.qPos = positions(info, 10, a.Tq, "qPos");
  a.kPos = positions(info, 11, a.Tk, "kPos");
  sp_current_table()->attnBackward(a);
  return info.Env().Undefined();
}
// attnDelta(delta, dOut, out, rows, D) / attnMerge(out, lse, out2, lse2, rows, D)
Napi::Value AttnDelta(const Info& info) {
  const int64_t rows = I(info, 3, "rows"), D = I(info, 4, "D");
  sp_current_table()->attnDelta(F(info, 0, rows, "delta"), F(info, 1, rows * D, "dOut"), F(info, 2, rows * D, "out"), rows, D);
  return info.Env().Undefined();
}
Napi::Value AttnMerge(const Info& info) {
  const int64_t rows = I(info, 4, "rows"), D = I(info, 5, "D");
  sp_current_table()->attnMerge(F(info, 0, rows * D, "out"), F(info, 1, rows, "lse"), F(info, 2, rows * D, "out2"),
                                F(info, 3, rows, "lse2"), rows, D);
  return info.Env().Undefined();
}

// setIsa('avx512' | 'avx2' | 'scalar') -> true, or throws if this CPU cannot run it.
Napi::Value SetIsa(const Info& info) {
  const std::string name = info[0].ToString().Utf8Value();
  if (!sp_isa_supported(name)) throw Napi::Error::New(info.Env(), "ISA '" + name + "' is not supported on this CPU");
  sp_set_table(name == "avx512" ? sp_avx512::table() : name == "avx2" ? sp_avx2::table() : sp_scalar::table());
  return Napi::Boolean::New(info.Env(), true);
}
Napi::Value Isa(const Info& info) { return Napi::String::New(info.Env(), sp_current_table()->name); }
Napi::Value SupportedIsas(const Info& info) {
  Napi::Array r = Napi::Array::New(info.Env());
  uint32_t n = 0;
  for (const char* s : {"avx512", "avx2", "scalar"})
    if (sp_isa_supported(s)) r.Set(n++, Napi::String::New(info.Env(), s));
  return r;
}
Napi::Value SetThreads(const Info& info) {
  sp_set_threads((int)I(info, 0, "threads"));
  return info.Env().Undefined();
}
Napi::Value Threads(const Info& info) { return Napi::Number::New(info.Env(), sp_threads()); }
// pinCurrentThread(core) -> whether sched_setaffinity succeeded (Linux only).
Napi::Value PinCurrentThread(const Info& info) {
  const int64_t core = I(info, 0, "core");
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (core >= CPU_SETSIZE) return Napi::Boolean::New(info.Env(), false);
  CPU_SET((int)core, &set);
  return Napi::Boolean::New(info.Env(), sched_setaffinity(0, sizeof(set), &set) == 0);
#else
  (void)core;
  return Napi::Boolean::New(info.Env(), false);
#endif
}
// fmaPeak(iters) -> FLOPs executed by the current ISA's FMA-throughput loop (time it in JS).
Napi::Value FmaPeak(const Info& info) {
  float sink = 0;
  const double flops = sp_current_table()->fmaPeak(I(info, 0, "iters"), &sink);
  return Napi::Number::New(info.Env(), flops + (sink == 12345.0f ? 1 : 0));
}
Napi::Value CpuSeconds(const Info& info) { return Napi::Number::New(info.Env(), sp_cpu_seconds()); }
Napi::Value ReleaseScratch(const Info& info) {
  sp_release_scratch();
  sp_release_rope_table();
  return info.Env().Undefined();
}

}  // namespace

void init_attn(Napi::Env env, Napi::Object exports) {
#define SP_EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, fn, name))
  SP_EXPORT("attnForward", AttnForward);
  SP_EXPORT("attnBackward", AttnBackward);
  SP_EXPORT("attnDelta", AttnDelta);
  SP_EXPORT("attnMerge", AttnMerge);
  SP_EXPORT("setIsa", SetIsa);
  SP_EXPORT("isa", Isa);
  SP_EXPORT("supportedIsas", SupportedIsas);
  SP_EXPORT("setThreads", SetThreads);
  SP_EXPORT("threads", Threads);
  SP_EXPORT("pinCurrentThread", PinCurrentThread);
  SP_EXPORT("fmaPeak", FmaPeak);
  SP_EXPORT("releaseScratch", ReleaseScratch);
  SP_EXPORT("cpuSeconds", CpuSeconds);
#undef SP_EXPORT
}
