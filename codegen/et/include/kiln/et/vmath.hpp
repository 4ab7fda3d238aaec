// exp, tanh and sigmoid (Cephes' single-precision approximations, about 1 ulp), expm1, log, log1p and erf (a
// few ulp) on SIMD vectors, and the helpers to run a vector function over any count of floats. The tail of a
// row goes through the same vector code (padded), so a value's result never depends on where a tile boundary
// falls.
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

namespace detail {
// ln 2 in two parts: the first has few bits, so n * ln2_hi is exact and x - n ln 2 keeps x's precision.
inline constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;

// x = n ln 2 + r with n = floor(x / ln 2 + 1/2), |r| <= ln 2 / 2. Returns r, sets n.
inline vfloat exp_split(vfloat x, vfloat& n) {
  const vfloat fx = x * 1.44269504088896341f + 0.5f;
  n = __builtin_convertvector(__builtin_convertvector(fx, vint), vfloat);
  n = n > fx ? n - 1.0f : n;  // the conversion truncates towards zero
  return x - n * ln2_hi - n * ln2_lo;
}

// exp(r) - 1 = r + r^2 P(r) for |r| <= ln 2 / 2 (Cephes' expf polynomial), never formed as exp(r) - 1, so it
// keeps its relative precision near 0.
inline vfloat expm1_reduced(vfloat r) {
  const vfloat z = r * r;
  vfloat y = broadcast(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  return y * z + r;
}

// 2^n for integral n in [-126, 127], built in the exponent bits.
inline vfloat pow2(vfloat n) {
  const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
  vfloat p;
  std::memcpy(&p, &bits, sizeof p);
  return p;
}
}  // namespace detail

// exp(x) = (expm1(r) + 1) 2^n, with 2^n applied as two powers of 2 that each stay normal: the results just
// below FLT_MAX (n = 128) and the subnormal ones (n down to -150) come out right. The clamp keeps n in that
// range: exp is inf in float above 89 and rounds to 0 below -104, where the product overflows or underflows to
// just that. A NaN stays NaN (the clamp would make it a number).
inline vfloat vexp(vfloat x) {
  const vfloat c = vmin(vmax(x, broadcast(-104.0f)), broadcast(89.0f));
  vfloat n;
  const vfloat r = detail::exp_split(c, n);
  const vfloat half = __builtin_convertvector(__builtin_convertvector(n * 0.5f, vint), vfloat);
  const vfloat y = (detail::expm1_reduced(r) + 1.0f) * detail::pow2(half) * detail::pow2(n - half);
  return x != x ? x : y;
}

// exp(x) where 2^n is a normal float (x in [-87, 88], NaN excluded): vexp's result without its clamp, its
// second power of 2 and its NaN test. erf's exp(Q(t)), Q in [-18, 0], takes it: verf gave the same bits for all
// 2^32 floats when checked once, and test_vmath checks vexp_normal against vexp over its sweep; GELU 5-7% faster on
// the residual MLP (Zen 5).
inline vfloat vexp_normal(vfloat x) {
  vfloat n;
  const vfloat r = detail::exp_split(x, n);
  return (detail::expm1_reduced(r) + 1.0f) * detail::pow2(n);
}

// tanh: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above (with the sign of x); NaN for NaN
// (through vexp).
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

// 1 / (1 + exp(-x)), written with exp(-|x|) so that nothing overflows; NaN for NaN (through vexp).
inline vfloat vsigmoid(vfloat x) {
  const vfloat e = vexp(-vabs(x));
  const vfloat r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

// The functions below return NaN for NaN (selecting x where x != x at the end: their clamps and compares
// would otherwise turn a NaN into a number) and, for +-inf and +-0, what the std:: functions return.

// exp(x) - 1 = 2^n (p + 1) - 1 with x = n ln 2 + r and p = expm1(r): p itself for n = 0, where the result is
// small, so it keeps p's relative precision, and nothing cancels elsewhere. Written as 2 (2^(n-1) p + (2^(n-1) - 1/2)) because 2^n itself
// overflows at n = 128; 2^(n-1) - 1/2 is exact for |n| <= 24, beyond which the 1 is below the rounding.
inline vfloat vexpm1(vfloat x) {
  // expm1 is -1 below -17.4 and inf above 88.73 in float; the clamp keeps 2^(n-1) a normal float.
  const vfloat c = vmin(vmax(x, broadcast(-30.0f)), broadcast(89.0f));
  vfloat n;
  const vfloat p = detail::expm1_reduced(detail::exp_split(c, n));
  const vfloat h = detail::pow2(n - 1.0f);
  vfloat y = 2.0f * (h * p + (h - 0.5f));
  y = n == 0.0f ? p : y;  // p itself: halving then doubling would round a subnormal x
  y = x == 0.0f ? x : y;  // the sign of -0
  return x != x ? x : y;
}

namespace detail {
// log(1 + f) = f - f^2 / 2 + f^3 P(f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]. P is minimax for the relative
// error of the result (6e-9; Remez exchange in 50-digit arithmetic, as for verf's polynomials).
inline vfloat log1p_reduced(vfloat f) {
  const vfloat z = f * f;
  vfloat y = broadcast(-7.634494e-02f);
  y = y * f + 1.2761575e-01f;
  y = y * f - 1.3160183e-01f;
  y = y * f + 1.4201759e-01f;
  y = y * f - 1.6623357e-01f;
  y = y * f + 2.0001227e-01f;
  y = y * f - 2.500082e-01f;
  y = y * f + 3.333333e-01f;
  return f + (y * z * f - 0.5f * z);
}

// x = 2^k m with m in [sqrt(1/2), sqrt(2)), for normal x > 0: k is the exponent of x / sqrt(1/2), and m keeps
// x's mantissa bits, re-based on sqrt(1/2), so that |log m| <= ln 2 / 2 and m - 1 is exact. Returns k, sets m.
inline vfloat split_exponent(vfloat x, vfloat& m) {
  constexpr std::int32_t sqrt_half = 0x3f3504f3;
  vint bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits -= sqrt_half;
  const vint k = bits >> 23;  // arithmetic shift: below sqrt(1/2) the exponent goes negative
  bits = (bits & 0x7fffff) + sqrt_half;
  std::memcpy(&m, &bits, sizeof m);
  return __builtin_convertvector(k, vfloat);
}
}  // namespace detail

// log x = k ln 2 + log1p(m - 1), the small terms summed first.
inline vfloat vlog(vfloat x) {
  const vint subnormal = x < 0x1p-126f;  // scaled into the normal range first (also catches x <= 0: fixed below)
  vfloat m;
  vfloat k = detail::split_exponent(subnormal ? x * 0x1p23f : x, m);
  k = subnormal ? k - 23.0f : k;
  vfloat y = k * detail::ln2_hi + (detail::log1p_reduced(m - 1.0f) + k * detail::ln2_lo);
  y = x == __builtin_inff() ? x : y;
  y = x == 0.0f ? broadcast(-__builtin_inff()) : y;
  y = x < 0.0f ? broadcast(__builtin_nanf("")) : y;
  return x != x ? x : y;
}

// log1p x = log u + log(1 + (x - (u - 1)) / u) with u = 1 + x rounded: the second term, to first order,
// restores the bits of x that the rounding of u dropped. Where u's exponent k is 0, the reduced argument is x
// itself (m - 1 = u - 1 would lose them), which keeps the relative precision of small x.
inline vfloat vlog1p(vfloat x) {
  const vfloat u = 1.0f + x;
  vfloat m;
  const vfloat k = detail::split_exponent(u, m);
  const vint k0 = k == 0.0f;
  const vfloat f = k0 ? x : m - 1.0f;
  const vfloat c = k0 ? vfloat{} : (x - (u - 1.0f)) / u;
  vfloat y = k * detail::ln2_hi + (detail::log1p_reduced(f) + (k * detail::ln2_lo + c));
  y = x == __builtin_inff() ? x : y;
  y = x == 0.0f ? x : y;  // the sign of -0
  y = x == -1.0f ? broadcast(-__builtin_inff()) : y;
  y = x < -1.0f ? broadcast(__builtin_nanf("")) : y;
  return x != x ? x : y;
}

// erf: below |x| = 0.875, x + x R(x^2) (erf(x) / x = 2 / sqrt(pi) + ..., its leading 1 kept out of R so the
// rounding of R's first coefficient costs less); above, 1 - exp(Q(|x|)) with Q ~ log erfc on [0.875, 4],
// where erf already rounds to 1 from 3.92. Both minimax for the relative error of erf: 9e-9 and 2e-9.
inline vfloat verf(vfloat x) {
  const vfloat s = x * x;
  vfloat r = broadcast(-6.203255e-04f);
  r = r * s + 5.0321813e-03f;
  r = r * s - 2.6791463e-02f;
  r = r * s + 1.1282455e-01f;
  r = r * s - 3.761255e-01f;
  r = r * s + 1.2837915e-01f;
  const vfloat small = r * x + x;
  const vfloat ax = vabs(x);
  const vfloat t = vmin(ax, broadcast(4.0f));
  vfloat q = broadcast(2.009962e-04f);
  q = q * t - 3.092292e-03f;
  q = q * t + 2.2420216e-02f;
  q = q * t - 1.043275e-01f;
  q = q * t - 6.367372e-01f;
  q = q * t - 1.1279361e+00f;
  q = q * t - 1.3357536e-04f;
  vfloat large = 1.0f - vexp_normal(q);
  large = x < 0.0f ? -large : large;
  const vfloat y = ax < 0.875f ? small : large;
  return x != x ? x : y;
}

// y[i] = f(x[i]) for i < n, x and y may be the same.
template <class F>
inline void map_vectors(const float* x, float* y, index_t n, F f) {
  index_t i = 0;
  for (; i + simd_width <= n; i += simd_width) store(y + i, f(load(x + i)));
  if (i < n) store_first(y + i, f(load_first(x + i, n - i)), n - i);  // f sees zeros past n
}

// The sum of f(x[i]) over i < n (f takes a vector or a float): 4 x simd_width partial sums, pairwise enough for
// rows of a few thousand values. Four chains, not one: each add waits for the one before it, and a single chain
// left RMSNorm<256> at batch 256 waiting on it (5.14 -> 3.73 us on Zen 5).
template <class F>
inline float sum_mapped(const float* x, index_t n, F f) {
  vfloat acc[4] = {};
  index_t i = 0;
  for (; i + 4 * simd_width <= n; i += 4 * simd_width)
    for (int k = 0; k < 4; ++k) acc[k] += f(load(x + i + k * simd_width));
  for (; i + simd_width <= n; i += simd_width) acc[0] += f(load(x + i));
  float s = lane_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; i < n; ++i) s += f(x[i]);
  return s;
}
inline float sum_vectors(const float* x, index_t n) {
  return sum_mapped(x, n, [](auto v) { return v; });
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace kiln::et
