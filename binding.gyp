{
  # The kernels (native/gemm.cc, attn_*.cc, rows_*.cc, table.cc) are compiled three times with
  # different ISA flags into static libraries; each copy lands in its own namespace (simd.h), and
  # the addon picks one at run time (__builtin_cpu_supports), or the one forced by setIsa().
  "variables": {
    "kernel_sources": [
      "native/gemm.cc", "native/attn_fwd.cc", "native/attn_bwd.cc",
      "native/rows_norm.cc", "native/rows_misc.cc", "native/table.cc"
    ],
    "common_flags": ["-O3", "-std=c++17", "-fno-math-errno", "-fPIC"]
  },
  "targets": [
    {
      "target_name": "sp_kernels_avx512",
      "type": "static_library",
      "sources": ["<@(kernel_sources)"],
      "cflags_cc": ["<@(common_flags)", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma", "-mprefer-vector-width=512"],
      "cflags_cc!": ["-O2", "-O0", "-std=gnu++17", "-std=gnu++20", "-fno-exceptions"]
    },
    {
      "target_name": "sp_kernels_avx2",
      "type": "static_library",
      "sources": ["<@(kernel_sources)"],
      "cflags_cc": ["<@(common_flags)", "-mavx2", "-mfma"],
      "cflags_cc!": ["-O2", "-O0", "-std=gnu++17", "-std=gnu++20", "-fno-exceptions"]
    },
    {
      "target_name": "sp_kernels_scalar",
      "type": "static_library",
      "sources": ["<@(kernel_sources)"],
      "cflags_cc": ["<@(common_flags)"],
      "cflags_cc!": ["-O2", "-O0", "-std=gnu++17", "-std=gnu++20", "-fno-exceptions"]
    },
    {
      "target_name": "seqpar_native",
      "sources": ["native/addon.cc", "native/addon_attn.cc", "native/runtime.cc"],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
        "sp_kernels_avx512", "sp_kernels_avx2", "sp_kernels_scalar"
      ],
      "cflags_cc": ["<@(common_flags)", "-fexceptions"],
      "cflags_cc!": ["-O2", "-O0", "-std=gnu++17", "-std=gnu++20", "-fno-exceptions"]
    }
  ]
}
