// Assembles this ISA build's function table (one per namespace: sp_avx512 / sp_avx2 / sp_scalar).
#include "api.h"
#include "simd.h"

namespace SP_NS {

void register_gemm(KernelTable& t);
void register_attn_fwd(KernelTable& t);
void register_attn_bwd(KernelTable& t);
void register_rows_norm(KernelTable& t);
void register_rows_misc(KernelTable& t);

static KernelTable build() {
  KernelTable t{};
#if defined(__AVX512F__)
  t.name = "avx512";
#elif defined(__AVX2__)
  t.name = "avx2";
#else
  t.name = "scalar";
#endif
  register_gemm(t);
  register_attn_fwd(t);
  register_attn_bwd(t);
  register_rows_norm(t);
  register_rows_misc(t);
  return t;
}

const KernelTable* table() {
  static const KernelTable t = build();
  return &t;
}

}  // namespace SP_NS
