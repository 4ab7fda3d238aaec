// exp, tanh and sigmoid on SIMD vectors (Cephes' single-precision approximations, about 1 ulp), and the
// helpers to run a vector function over any count of floats. The tail of a row goes through the same vector
// code (padded), so a value's result never depends on where a tile boundary falls.
#pragma once

#include <kiln/dsl/dims.hpp>
#include <kiln/et/simd.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace kiln::et {

using vint = std::int32_t __attribute__((vector_size(simd_width * sizeof(float))));

#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that `i + simd_width` could overflow after 2^62 iterations; row sizes are far below that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
inline vfloat vmin(vfloat a, vfloat b) { return a < b ? a : b; }
inline vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }
inline vfloat vabs(vfloat a) { return a < 0.0f ? -a : a; }

inline vfloat vexp(vfloat x) {
  x = vmin(vmax(x, broadcast(-87.3365478515625f)), broadcast(88.72283935546875f));
  const vfloat fx = x * 1.44269504088896341f + 0.5f;  // n = floor(x / ln 2 + 1/2)
  vfloat n = __builtin_convertvector(__builtin_convertvector(fx, vint), vfloat);
  n = n > fx ? n - 1.0f : n;
  x = x - n * 0.693359375f - n * -2.12194440e-4f;  // x - n ln 2, in two parts for precision
  const vfloat z = x * x;
  vfloat y = broadcast(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;  // 2^n
  vfloat scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

// tanh: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above (with the sign of x).
inline vfloat vtanh(vfloat x) {
  const vfloat ax = vabs(x);
  const vfloat z = x * x;
  vfloat p = broadcast(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const vfloat small = p * z * x + x;
  vfloat large = 1.0f - 2.0f / (vexp(2.0f * ax) + 1.0f);
  large = x < 0.0f ? -large : large;
  return ax < 0.625f ? small : large;
}

// 1 / (1 + exp(-x)), written with exp(-|x|) so that nothing overflows.
inline vfloat vsigmoid(vfloat x) {
  const vfloat e = vexp(-vabs(x));
  const vfloat r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

// y[i] = f(x[i]) for i < n, x and y may be the same.
template <class F>
inline void map_vectors(const float* x, float* y, index_t n, F f) {
  index_t i = 0;
  for (; i + simd_width <= n; i += simd_width) store(y + i, f(load(x + i)));
  if (i < n) {
    float buf[simd_width] = {};
    std::copy(x + i, x + n, buf);
    store(buf, f(load(buf)));
    std::copy(buf, buf + (n - i), y + i);
  }
}

// Sum of x[0, n) with simd_width partial sums (pairwise enough for rows of a few thousand values).
inline float sum_vectors(const float* x, index_t n) {
  vfloat acc{};
  index_t i = 0;
  for (; i + simd_width <= n; i += simd_width) acc += load(x + i);
  float s = 0;
  for (int l = 0; l < simd_width; ++l) s += acc[l];
  for (; i < n; ++i) s += x[i];
  return s;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace kiln::et
