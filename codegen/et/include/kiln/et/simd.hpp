// The portable SIMD vector the kernels are written in: GCC/clang vector extensions, which both compilers
// lower to AVX-512, AVX2 or SSE depending on the target flags (-march). No intrinsics, no extra dependency.
#pragma once

#if !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

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

// Lane-wise square root. Vector extensions have none, and std::sqrt in a loop does not vectorise while it
// may set errno: clang has a builtin, g++ gets the target's instruction.
inline vfloat vsqrt(vfloat v) {
#if defined(__clang__)
  return __builtin_elementwise_sqrt(v);
#elif defined(__AVX512F__)
  return reinterpret_cast<vfloat>(_mm512_maskz_sqrt_ps(0xFFFF, reinterpret_cast<__m512>(v)));  // maskz: no undefined lanes
#elif defined(__AVX__)
  return reinterpret_cast<vfloat>(_mm256_sqrt_ps(reinterpret_cast<__m256>(v)));
#elif defined(__SSE2__)
  return reinterpret_cast<vfloat>(_mm_sqrt_ps(reinterpret_cast<__m128>(v)));
#else
  for (int l = 0; l < simd_width; ++l) v[l] = __builtin_sqrtf(v[l]);
  return v;
#endif
}

}  // namespace kiln::et
