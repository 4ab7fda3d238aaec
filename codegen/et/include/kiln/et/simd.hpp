// The portable SIMD vector the kernels are written in: GCC/clang vector extensions, which both compilers
// lower to AVX-512, AVX2 or SSE depending on the target flags (-march). No intrinsics, no extra dependency.
#pragma once

namespace kiln::et {

#if defined(__AVX512F__)
inline constexpr int simd_width = 16;
#elif defined(__AVX__)
inline constexpr int simd_width = 8;
#else
inline constexpr int simd_width = 4;
#endif

using vfloat = float __attribute__((vector_size(simd_width * sizeof(float))));

// Loads and stores at any address (memcpy compiles to one unaligned vector move on every target).
inline vfloat load(const float* p) {
  vfloat v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vfloat v) { __builtin_memcpy(p, &v, sizeof v); }
inline vfloat broadcast(float x) { return vfloat{} + x; }

}  // namespace kiln::et
