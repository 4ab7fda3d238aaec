// exp, tanh and sigmoid (Cephes' single-precision approximations, about 1 ulp), expm1, log, log1p and erf (a
// few ulp) on SIMD vectors or packs of them (vpack), and the helpers to run a vector function over any count of
// floats. The tail of a row goes through the same vector code (padded), so a value's result never depends on
// where a tile boundary falls.
#pragma once

#include <kiln/dsl/dims.hpp>
#include <kiln/et/simd.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace kiln::et {

#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that `i + simd_width` could overflow after 2^62 iterations; row sizes are far below that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
// K vectors as one value, each operation applied to all K before the next, so that the math below, run on a
// pack, evaluates K dependency chains side by side. erf's is about 100 cycles long; written one vector after the
// other, out-of-order execution overlapped only a few of them (an erf map on Zen 3, one vector at a time / four:
// g++ 11.0 / 9.0-9.7 ns a vector, clang 13.6 / 10.3; the same bits). Comparisons give a vmask, which vselect reads.
#if defined(__clang__)
// clang fuses a * b + c only within one expression, g++ across statements; a pack's * and + are separate
// functions. From here to verf, clang fuses as g++ does.
#pragma float_control(push)
#pragma clang fp contract(fast)
#endif
template <int K>
struct vpack {
  vfloat v[K];
  vpack() = default;
  vpack(float x) {  // NOLINT: implicit, as a float is in arithmetic on vectors
    for (int k = 0; k < K; ++k) v[k] = broadcast(x);
  }
};
template <int K>
struct vmask {
  vint m[K];
};

#define KILN_VPACK_ARITHMETIC(op)                                                                            \
  template <int K>                                                                                           \
  inline vpack<K> operator op(vpack<K> a, const vpack<K>& b) {                                               \
    for (int k = 0; k < K; ++k) a.v[k] = a.v[k] op b.v[k];                                                   \
    return a;                                                                                                \
  }                                                                                                          \
  template <int K>                                                                                           \
  inline vpack<K> operator op(vpack<K> a, float b) {                                                         \
    for (int k = 0; k < K; ++k) a.v[k] = a.v[k] op b;                                                        \
    return a;                                                                                                \
  }                                                                                                          \
  template <int K>                                                                                           \
  inline vpack<K> operator op(float a, vpack<K> b) {                                                         \
    for (int k = 0; k < K; ++k) b.v[k] = a op b.v[k];                                                        \
    return b;                                                                                                \
  }
KILN_VPACK_ARITHMETIC(+)
KILN_VPACK_ARITHMETIC(-)
KILN_VPACK_ARITHMETIC(*)
KILN_VPACK_ARITHMETIC(/)
#undef KILN_VPACK_ARITHMETIC
template <int K>
inline vpack<K> operator-(vpack<K> a) {
  for (int k = 0; k < K; ++k) a.v[k] = -a.v[k];
  return a;
}
#define KILN_VPACK_COMPARISON(op)                                                                            \
  template <int K>                                                                                           \
  inline vmask<K> operator op(const vpack<K>& a, const vpack<K>& b) {                                        \
    vmask<K> c;                                                                                              \
    for (int k = 0; k < K; ++k) c.m[k] = a.v[k] op b.v[k];                                                   \
    return c;                                                                                                \
  }                                                                                                          \
  template <int K>                                                                                           \
  inline vmask<K> operator op(const vpack<K>& a, float b) {                                                  \
    vmask<K> c;                                                                                              \
    for (int k = 0; k < K; ++k) c.m[k] = a.v[k] op b;                                                        \
    return c;                                                                                                \
  }
KILN_VPACK_COMPARISON(<)
KILN_VPACK_COMPARISON(>)
KILN_VPACK_COMPARISON(<=)
KILN_VPACK_COMPARISON(>=)
KILN_VPACK_COMPARISON(==)
KILN_VPACK_COMPARISON(!=)
#undef KILN_VPACK_COMPARISON

// m ? a : b lane by lane, on vectors or packs.
inline vfloat vselect(vint m, vfloat a, vfloat b) { return m ? a : b; }
template <int K>
inline vpack<K> vselect(const vmask<K>& m, vpack<K> a, const vpack<K>& b) {
  for (int k = 0; k < K; ++k) a.v[k] = m.m[k] ? a.v[k] : b.v[k];
  return a;
}
// x in every lane of a vector or a pack.
template <class V>
inline V splat(float x) {
  if constexpr (std::is_same_v<V, vfloat>) return broadcast(x);
  else return V(x);
}

namespace detail {
// f on each vector of a pack: the bit-level steps below (short chains) take packs vector by vector.
template <int K, class F>
inline vpack<K> each(vpack<K> x, F f) {
  for (int k = 0; k < K; ++k) x.v[k] = f(x.v[k]);
  return x;
}
template <int K, class F>
inline vpack<K> each(vpack<K> x, const vpack<K>& y, F f) {
  for (int k = 0; k < K; ++k) x.v[k] = f(x.v[k], y.v[k]);
  return x;
}
}  // namespace detail

// simd.hpp's vmin and vmax, vector by vector.
template <int K>
inline vpack<K> vmin(const vpack<K>& a, const vpack<K>& b) {
  return detail::each(a, b, [](vfloat x, vfloat y) { return vmin(x, y); });
}
template <int K>
inline vpack<K> vmax(const vpack<K>& a, const vpack<K>& b) {
  return detail::each(a, b, [](vfloat x, vfloat y) { return vmax(x, y); });
}
template <int K>
inline vpack<K> vfloor(const vpack<K>& a) {
  return detail::each(a, [](vfloat x) { return vfloor(x); });
}
// |a|: the sign bit cleared (one instruction; a compare and a select took three).
inline vfloat vabs(vfloat a) {
  vint bits;
  std::memcpy(&bits, &a, sizeof a);
  bits &= 0x7fffffff;
  std::memcpy(&a, &bits, sizeof a);
  return a;
}
template <int K>
inline vpack<K> vabs(const vpack<K>& a) {
  return detail::each(a, [](vfloat x) { return vabs(x); });
}
// v (whose sign bit is clear) with the sign of x: x's sign bit put in, where a select on x < 0 took a compare,
// a negation and a blend.
inline vfloat with_sign_of(vfloat v, vfloat x) {
  vint a, b;
  std::memcpy(&a, &v, sizeof v);
  std::memcpy(&b, &x, sizeof x);
  a |= b & static_cast<std::int32_t>(0x80000000u);
  std::memcpy(&v, &a, sizeof v);
  return v;
}
template <int K>
inline vpack<K> with_sign_of(vpack<K> v, const vpack<K>& x) {
  return detail::each(v, x, [](vfloat a, vfloat b) { return with_sign_of(a, b); });
}

namespace detail {
// ln 2 in two parts: the first has few bits, so n * ln2_hi is exact and x - n ln 2 keeps x's precision.
inline constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;

// x = n ln 2 + r with n = floor(x / ln 2 + 1/2), |r| <= ln 2 / 2. Returns r, sets n.
template <class V>
inline V exp_split(V x, V& n) {
  n = vfloor(x * 1.44269504088896341f + 0.5f);
  return x - n * ln2_hi - n * ln2_lo;
}

// exp(r) - 1 = r + r^2 P(r) for |r| <= ln 2 / 2 (Cephes' expf polynomial), never formed as exp(r) - 1, so it
// keeps its relative precision near 0.
template <class V>
inline V expm1_reduced(V r) {
  const V z = r * r;
  V y = splat<V>(1.9875691500e-4f);
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
template <int K>
inline vpack<K> pow2(vpack<K> n) { return each(n, [](vfloat v) { return pow2(v); }); }

// y 2^n for integral n where 2^n is a normal float (n in [-126, 127]).
inline vfloat times_pow2(vfloat y, vfloat n) {
#if defined(__AVX512F__)
  return vscalef(y, n);
#else
  return y * pow2(n);
#endif
}
// y 2^n for integral n in [-151, 128], y in [1/2, 2], rounded once: the results just below FLT_MAX (n = 128)
// and the subnormal ones (n down to -150) come out right. Without vscalef, 2^n as two powers of 2 that each
// stay normal: the first product is exact, the second rounds.
inline vfloat times_pow2_wide(vfloat y, vfloat n) {
#if defined(__AVX512F__)
  return vscalef(y, n);
#else
  const vfloat half = vtrunc(n * 0.5f);
  return y * pow2(half) * pow2(n - half);
#endif
}
template <int K>
inline vpack<K> times_pow2(vpack<K> y, const vpack<K>& n) {
  return each(y, n, [](vfloat a, vfloat b) { return times_pow2(a, b); });
}
template <int K>
inline vpack<K> times_pow2_wide(vpack<K> y, const vpack<K>& n) {
  return each(y, n, [](vfloat a, vfloat b) { return times_pow2_wide(a, b); });
}
}  // namespace detail

// exp(x) = (expm1(r) + 1) 2^n (times_pow2_wide). The clamp keeps n where that is right: exp is inf in float
// above 89 and rounds to 0 below -104, where the product overflows or underflows to just that. A NaN stays NaN
// (the clamp would make it a number).
template <class V>
inline V vexp(V x) {
  const V c = vmin(vmax(x, splat<V>(-104.0f)), splat<V>(89.0f));
  V n;
  const V r = detail::exp_split(c, n);
  const V y = detail::times_pow2_wide(detail::expm1_reduced(r) + 1.0f, n);
  return vselect(x != x, x, y);
}

// exp(x) where 2^n is a normal float (x in [-87, 88], NaN excluded): vexp's result without its clamp, its
// wide 2^n and its NaN test. erf's exp(Q(t)), Q in [-18, 0], takes it: verf gave the same bits for all
// 2^32 floats when checked once, and test_vmath checks vexp_normal against vexp over its sweep; GELU 5-7% faster on
// the residual MLP (Zen 5).
template <class V>
inline V vexp_normal(V x) {
  V n;
  const V r = detail::exp_split(x, n);
  return detail::times_pow2(detail::expm1_reduced(r) + 1.0f, n);
}

// tanh: an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above (with the sign of x); NaN for NaN.
// From |x| = 9.02 on, tanh rounds to 1: |x| clamped to 10 keeps exp's argument where vexp_normal holds, with
// the same results as vexp.
template <class V>
inline V vtanh(V x) {
  const V ax = vabs(x);
  const V z = x * x;
  V p = splat<V>(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const V small = p * z * x + x;
  const V large = with_sign_of(1.0f - 2.0f / (vexp_normal(2.0f * vmin(ax, splat<V>(10.0f))) + 1.0f), x);
  return vselect(x != x, x, vselect(ax < 0.625f, small, large));
}

// 1 / (1 + exp(-x)), written with exp(-|x|) so that nothing overflows; NaN for NaN (through vexp).
template <class V>
inline V vsigmoid(V x) {
  const V e = vexp(-vabs(x));
  const V r = 1.0f / (1.0f + e);
  return vselect(x >= 0.0f, r, e * r);
}

// The functions below return NaN for NaN (selecting x where x != x at the end: their clamps and compares
// would otherwise turn a NaN into a number) and, for +-inf and +-0, what the std:: functions return.

// exp(x) - 1 = 2^n (p + 1) - 1 with x = n ln 2 + r and p = expm1(r): p itself for n = 0, where the result is
// small, so it keeps p's relative precision, and nothing cancels elsewhere. Written as 2 (2^(n-1) p + (2^(n-1) -
// 1/2)) because 2^n itself overflows at n = 128; 2^(n-1) - 1/2 is exact for |n| <= 24, beyond which the 1 is below
// the rounding.
template <class V>
inline V vexpm1(V x) {
  // expm1 is -1 below -17.4 and inf above 88.73 in float; the clamp keeps 2^(n-1) a normal float.
  const V c = vmin(vmax(x, splat<V>(-30.0f)), splat<V>(89.0f));
  V n;
  const V p = detail::expm1_reduced(detail::exp_split(c, n));
  const V h = detail::pow2(n - 1.0f);
  V y = 2.0f * (h * p + (h - 0.5f));
  y = vselect(n == 0.0f, p, y);  // p itself: halving then doubling would round a subnormal x
  y = vselect(x == 0.0f, x, y);  // the sign of -0
  return vselect(x != x, x, y);
}

namespace detail {
// log(1 + f) = f - f^2 / 2 + f^3 P(f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]. P is minimax for the relative
// error of the result (6e-9; Remez exchange in 50-digit arithmetic, as for verf's polynomials).
template <class V>
inline V log1p_reduced(V f) {
  const V z = f * f;
  V y = splat<V>(-7.634494e-02f);
  y = y * f + 1.2761575e-01f;
  y = y * f - 1.3160183e-01f;
  y = y * f + 1.4201759e-01f;
  y = y * f - 1.6623357e-01f;
  y = y * f + 2.0001227e-01f;
  y = y * f - 2.500082e-01f;
  y = y * f + 3.333333e-01f;
  // Two statements, so that a vector and a pack fuse the same product with the subtraction (g++ evaluates a
  // pack operator's arguments right to left, and fuses the product it meets first).
  const V cubic = y * z * f;
  return f + (cubic - 0.5f * z);
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
template <int K>
inline vpack<K> split_exponent(vpack<K> x, vpack<K>& m) {
  for (int k = 0; k < K; ++k) x.v[k] = split_exponent(x.v[k], m.v[k]);
  return x;
}
}  // namespace detail

// log x = k ln 2 + log1p(m - 1), the small terms summed first.
template <class V>
inline V vlog(V x) {
  const auto subnormal = x < 0x1p-126f;  // scaled into the normal range first (also catches x <= 0: fixed below)
  V m;
  V k = detail::split_exponent(vselect(subnormal, x * 0x1p23f, x), m);
  k = vselect(subnormal, k - 23.0f, k);
  V y = k * detail::ln2_hi + (detail::log1p_reduced(m - 1.0f) + k * detail::ln2_lo);
  y = vselect(x == __builtin_inff(), x, y);
  y = vselect(x == 0.0f, splat<V>(-__builtin_inff()), y);
  y = vselect(x < 0.0f, splat<V>(__builtin_nanf("")), y);
  return vselect(x != x, x, y);
}

// log1p x = log u + log(1 + (x - (u - 1)) / u) with u = 1 + x rounded: the second term, to first order,
// restores the bits of x that the rounding of u dropped. Where u's exponent k is 0, the reduced argument is x
// itself (m - 1 = u - 1 would lose them), which keeps the relative precision of small x.
template <class V>
inline V vlog1p(V x) {
  const V u = 1.0f + x;
  V m;
  const V k = detail::split_exponent(u, m);
  const auto k0 = k == 0.0f;
  const V f = vselect(k0, x, m - 1.0f);
  const V c = vselect(k0, splat<V>(0.0f), (x - (u - 1.0f)) / u);
  V y = k * detail::ln2_hi + (detail::log1p_reduced(f) + (k * detail::ln2_lo + c));
  y = vselect(x == __builtin_inff(), x, y);
  y = vselect(x == 0.0f, x, y);  // the sign of -0
  y = vselect(x == -1.0f, splat<V>(-__builtin_inff()), y);
  y = vselect(x < -1.0f, splat<V>(__builtin_nanf("")), y);
  return vselect(x != x, x, y);
}

// erf: below |x| = 0.875, x + x R(x^2) (erf(x) / x = 2 / sqrt(pi) + ..., its leading 1 kept out of R so the
// rounding of R's first coefficient costs less); above, 1 - exp(Q(|x|)) with Q ~ log erfc on [0.875, 4],
// where erf already rounds to 1 from 3.92. Both minimax for the relative error of erf: 9e-9 and 2e-9.
template <class V>
inline V verf(V x) {
  const V s = x * x;
  V r = splat<V>(-6.203255e-04f);
  r = r * s + 5.0321813e-03f;
  r = r * s - 2.6791463e-02f;
  r = r * s + 1.1282455e-01f;
  r = r * s - 3.761255e-01f;
  r = r * s + 1.2837915e-01f;
  const V small = r * x + x;
  const V ax = vabs(x);
  const V t = vmin(ax, splat<V>(4.0f));
  V q = splat<V>(2.009962e-04f);
  q = q * t - 3.092292e-03f;
  q = q * t + 2.2420216e-02f;
  q = q * t - 1.043275e-01f;
  q = q * t - 6.367372e-01f;
  q = q * t - 1.1279361e+00f;
  q = q * t - 1.3357536e-04f;
  const V large = with_sign_of(1.0f - vexp_normal(q), x);
  const V y = vselect(ax < 0.875f, small, large);
  return vselect(x != x, x, y);
}
#if defined(__clang__)
#pragma float_control(pop)
#endif

// Packs only where the compiler optimizes: it then fuses a pack's products and sums as a vector's (the same bits);
// at -O0, clang fuses only within one expression, and each of a pack's operators is a function of its own.
#if defined(__OPTIMIZE__)
inline constexpr bool packs_enabled = true;
#else
inline constexpr bool packs_enabled = false;
#endif

// A function of a vector that also takes a pack of F::pack vectors (ActivationOp): the maps below give it
// packs, whose chains run side by side.
template <class F>
concept PackFunction = packs_enabled && F::pack > 1 && requires(const F& f, vpack<F::pack> p) {
  { f(p) } -> std::same_as<vpack<F::pack>>;
};

// v[i] = f(v[i]) for i < n: in packs where f takes them. Flattened (f's math inlined whole) so that a pack
// stays in registers: passed to a call it goes through memory (an erf map 8.75 -> 66 ns a vector on Zen 3).
template <class F>
[[gnu::flatten]] inline void map_in_place(vfloat* v, int n, const F& f) {
  int i = 0;
  if constexpr (PackFunction<F>)
    for (; i + F::pack <= n; i += F::pack) {
      vpack<F::pack> p;
      for (int k = 0; k < F::pack; ++k) p.v[k] = v[i + k];
      p = f(p);
      for (int k = 0; k < F::pack; ++k) v[i + k] = p.v[k];
    }
  for (; i < n; ++i) v[i] = f(v[i]);
}

// y[i] = f(x[i]) for i < n, x and y may be the same: in packs where f takes them.
template <class F>
inline void map_vectors(const float* x, float* y, index_t n, F f) {
  index_t i = 0;
  if constexpr (PackFunction<F>) {
    constexpr index_t step = F::pack * simd_width;
    for (; i + step <= n; i += step) {
      vfloat v[F::pack];
      for (int k = 0; k < F::pack; ++k) v[k] = load(x + i + k * simd_width);
      map_in_place(v, F::pack, f);
      for (int k = 0; k < F::pack; ++k) store(y + i + k * simd_width, v[k]);
    }
  }
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
