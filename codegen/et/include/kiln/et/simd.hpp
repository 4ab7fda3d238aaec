// The portable SIMD vector the kernels are written in: GCC/clang vector extensions, which both compilers
// lower to AVX-512, AVX2 or SSE depending on the target flags (-march). No intrinsics, no extra dependency.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // what vector extensions lack: sqrt (g++), masked loads and stores, min/max, floor, scalef
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
using vint = std::int32_t __attribute__((vector_size(simd_width * sizeof(float))));

// Where the kernels keep their own floats (tiles' scratch, full-batch values, gradients, packed operands):
// 64-byte aligned, as kiln::Tensor is. glibc's malloc aligns to 16 bytes, so an AVX-512 load of such a buffer
// spans two cache lines, which Intel CPUs pay for twice: on the Intel Xeon (family 6 model 167), a Linear(512, 512)
// on 60 or 256 rows ran 13-17% slower with its packed weights 16 bytes past a line (170 against 195-199 GFLOP/s).
// For buffers kept from call to call: a large one allocated afresh on every call through operator new(align_val_t)
// (glibc's memalign) can make glibc grow and trim its heap every time (kiln::F::linear's packed weight).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, alignment); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
};
using float_buffer = std::vector<float, CacheLineAllocator<float>>;

// Loads and stores at any address (memcpy compiles to one unaligned vector move on every target).
inline vfloat load(const float* p) {
  vfloat v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vfloat v) { __builtin_memcpy(p, &v, sizeof v); }
// x - 0 rather than 0 + x: the same value for every x (-0 too), so the compiler drops the subtraction and a
// broadcast of a float in memory is one load (vbroadcastss m32); 0 + x is an add and a shuffle on the port that
// also runs half of the FMAs on Intel CPUs (which cost the Linear micro-kernel a fifth of its speed there).
inline vfloat broadcast(float x) { return x - vfloat{}; }
// op(...) over v's lanes as a tree: lane l with lane l + simd_width / 2, then with l + simd_width / 4, ...
// (log2(simd_width) shuffles; one scalar op after the other, the 15 adds of a 16-lane sum were a chain of
// about 60 cycles, as long as a LayerNorm's row of 64 values).
namespace detail {
template <int half, int... L>
inline vfloat lanes_down(vfloat v, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(v, v, ((L + half) % simd_width)...);
}
}  // namespace detail
template <class Op>
inline float lane_tree(vfloat v, Op op) {
  if constexpr (simd_width >= 16) v = op(v, detail::lanes_down<8>(v, std::make_integer_sequence<int, simd_width>{}));
  if constexpr (simd_width >= 8) v = op(v, detail::lanes_down<4>(v, std::make_integer_sequence<int, simd_width>{}));
  v = op(v, detail::lanes_down<2>(v, std::make_integer_sequence<int, simd_width>{}));
  v = op(v, detail::lanes_down<1>(v, std::make_integer_sequence<int, simd_width>{}));
  return v[0];
}
// The sum of v's lanes.
inline float lane_sum(vfloat v) {
  return lane_tree(v, [](vfloat a, vfloat b) { return a + b; });
}

// Lanes [0, n) from / to p, 0 <= n <= simd_width (loaded lanes past n are zero), for the last, partial block of
// a row: a masked move with AVX-512, a masked load with AVX, where a lane-by-lane copy cost a Linear(32, 4) as
// much as its FMAs (and, with AVX2, LayerNorm<256>'s backward at batch 256 20x its time: its loops took every
// block this way). AVX's masked store (vmaskmovps) is slow on AMD's Zen 3: stores of 4, 2 and 1 lanes instead
// (tiny 16-32-32-4 at batch 1, whose Linear(32, 4) ends in one, 207 -> 190 ns a call on Zen 3).
#if defined(__AVX__) && !defined(__AVX512F__)
namespace detail {
inline __m256i first_lanes(long n) {  // lane l all ones where l < n (vmaskmovps reads each lane's top bit)
  const __m256 lanes = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castps_si256(_mm256_cmp_ps(lanes, _mm256_set1_ps(static_cast<float>(n)), _CMP_LT_OQ));
}
}  // namespace detail
#endif
inline vfloat load_first(const float* p, long n) {
#if defined(__AVX512F__)
  return reinterpret_cast<vfloat>(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p));
#elif defined(__AVX__)
  return reinterpret_cast<vfloat>(_mm256_maskload_ps(p, detail::first_lanes(n)));
#else
  vfloat v{};
  for (long l = 0; l < n; ++l) v[l] = p[l];
  return v;
#endif
}
inline void store_first(float* p, vfloat v, long n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), reinterpret_cast<__m512>(v));
#elif defined(__AVX__)
  if (n == simd_width) return store(p, v);
  __m128 part = _mm256_castps256_ps128(reinterpret_cast<__m256>(v));
  if (n >= 4) {
    _mm_storeu_ps(p, part);
    part = _mm256_extractf128_ps(reinterpret_cast<__m256>(v), 1);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
    part = _mm_movehl_ps(part, part);
    p += 2;
    n -= 2;
  }
  if (n == 1) _mm_store_ss(p, part);
#else
  for (long l = 0; l < n; ++l) p[l] = v[l];
#endif
}

// a > b ? a : b and a < b ? a : b lane by lane (so a NaN, or two zeros, give b), one instruction each: x86's maxps
// and minps are defined so. g++ compiles the conditional itself to a compare and a mask, two instructions on the
// ports the FMAs use (ReLU in the Linear tiles' stores: max(0, x)). With AVX-512, the masked form with every lane
// set (the same instruction): g++ 12's _mm512_max_ps passes an undefined vector, which it then warns is
// uninitialized (GCC bug 105593), once per inlined call.
inline vfloat vmax(vfloat a, vfloat b) {
#if defined(__AVX512F__)
  const __m512 a512 = reinterpret_cast<__m512>(a);
  return reinterpret_cast<vfloat>(_mm512_mask_max_ps(a512, 0xFFFF, a512, reinterpret_cast<__m512>(b)));
#elif defined(__AVX__)
  return reinterpret_cast<vfloat>(_mm256_max_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b)));
#elif defined(__SSE__)
  return reinterpret_cast<vfloat>(_mm_max_ps(reinterpret_cast<__m128>(a), reinterpret_cast<__m128>(b)));
#else
  return a > b ? a : b;
#endif
}
inline vfloat vmin(vfloat a, vfloat b) {
#if defined(__AVX512F__)
  const __m512 a512 = reinterpret_cast<__m512>(a);
  return reinterpret_cast<vfloat>(_mm512_mask_min_ps(a512, 0xFFFF, a512, reinterpret_cast<__m512>(b)));
#elif defined(__AVX__)
  return reinterpret_cast<vfloat>(_mm256_min_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b)));
#elif defined(__SSE__)
  return reinterpret_cast<vfloat>(_mm_min_ps(reinterpret_cast<__m128>(a), reinterpret_cast<__m128>(b)));
#else
  return a < b ? a : b;
#endif
}

// The two shuffles of a butterfly stage of half-size b over vectors lo and hi (__builtin_shufflevector: clang,
// g++ >= 12): `low_halves` keeps lo's lanes with bit b clear and puts hi's lanes below them where it is set;
// `high_halves` puts lo's lanes above them where bit b is clear and keeps hi's where it is set.
namespace detail {
template <int b, int... L>
[[gnu::always_inline]] inline vfloat low_halves(vfloat lo, vfloat hi, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(lo, hi, ((L & b) == 0 ? L : L - b + simd_width)...);
}
// v with the lanes L and L ^ b swapped.
template <int b, int... L>
[[gnu::always_inline]] inline vfloat swapped_halves(vfloat v, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(v, v, (L ^ b)...);
}
template <int b, int... L>
[[gnu::always_inline]] inline vfloat high_halves(vfloat lo, vfloat hi, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(lo, hi, ((L & b) == 0 ? L + b : L + simd_width)...);
}
}  // namespace detail

// Transposes the simd_width x simd_width block whose rows are v[0..simd_width): afterwards v[j][r] is the old
// v[r][j]. log2(simd_width) butterfly stages; the stage of half-size b swaps the off-diagonal b x b blocks of
// every 2b x 2b block.
namespace detail {
template <int b>
inline void transpose_stage(vfloat* v) {
  constexpr auto lanes = std::make_integer_sequence<int, simd_width>{};
  for (int r = 0; r < simd_width; ++r) {
    if (r & b) continue;
    const vfloat lo = v[r], hi = v[r + b];
    v[r] = low_halves<b>(lo, hi, lanes);
    v[r + b] = high_halves<b>(lo, hi, lanes);
  }
}
template <int b>
inline void transpose_stages(vfloat* v) {
  transpose_stage<b>(v);
  if constexpr (b > 1) transpose_stages<b / 2>(v);
}
}  // namespace detail
inline void transpose_block(vfloat* v) { detail::transpose_stages<simd_width / 2>(v); }

// Sums within groups of g lanes (g a power of two), for n <= g vectors: lane k * g + j of the result is the sum of
// v[j]'s lanes [k * g, k * g + g), for j < n (the lanes for j >= n hold some of those sums again). With g =
// simd_width, lane j is the sum of all of v[j]'s lanes. transpose_block's stages with the two halves added, each
// halving the vectors (for 16 vectors 30 shuffles and 15 adds, where 16 horizontal sums take 64 shuffles and 64
// adds). Only v[0..n) is read and written: with 16 vectors declared and 4 used (one row of Linear(32, 4)), g++
// zeroed the other 12 and took all 16 through memory. Always inlined: in a translation unit with many networks
// g++ kept the stages out of line, and v then went through memory (Linear(32, 4) at batch 256: 1.3 us against 0.5).
namespace detail {
// One stage over v[0..n), written out (a loop here left the vectors in memory with g++ 12).
template <int b, int n, int... R>
[[gnu::always_inline]] inline void group_sums_stage(vfloat* v, std::integer_sequence<int, R...>) {
  constexpr auto lanes = std::make_integer_sequence<int, simd_width>{};
  auto fold = [&](auto r) {
    if constexpr (r + b < n) v[r] = low_halves<b>(v[r], v[r + b], lanes) + high_halves<b>(v[r], v[r + b], lanes);
    else v[r] += swapped_halves<b>(v[r], lanes);  // v[r + b] would be zeros: lanes L and L ^ b hold the same sum
  };
  (fold(std::integral_constant<int, R>{}), ...);
}
template <int b, int n>
[[gnu::always_inline]] inline void group_sums_stages(vfloat* v) {
  group_sums_stage<b, n>(v, std::make_integer_sequence<int, std::min(b, n)>{});
  if constexpr (b > 1) group_sums_stages<b / 2, std::min(b, n)>(v);
}
}  // namespace detail
template <int g, int n = g>
[[gnu::always_inline]] inline vfloat group_sums(vfloat* v) {
  static_assert(g >= 1 && g <= simd_width && (g & (g - 1)) == 0 && n >= 1 && n <= g);
  if constexpr (g > 1) detail::group_sums_stages<g / 2, n>(v);
  return v[0];
}

// p[0, n) repeated across the vector, n a power of two up to simd_width, by a load that repeats it (one instruction
// for every n but 4 and 8 without AVX-512 and AVX); load_repeated_first reads p[0, count) only, count <= n, with
// zeros in the other lanes of each repeat.
namespace detail {
template <int n, int... L>
[[gnu::always_inline]] inline vfloat repeat_first(vfloat v, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(v, v, (L % n)...);
}
}  // namespace detail
template <int n>
inline vfloat load_repeated_first(const float* p, long count) {
  return detail::repeat_first<n>(load_first(p, count), std::make_integer_sequence<int, simd_width>{});
}
template <int n>
inline vfloat load_repeated(const float* p) {
  static_assert(n >= 1 && n <= simd_width && (n & (n - 1)) == 0);
  using vdouble = double __attribute__((vector_size(simd_width * sizeof(float))));
  if constexpr (n == simd_width) {
    return load(p);
  } else if constexpr (n == 1) {
    return broadcast(*p);
  } else if constexpr (n == 2) {
    double pair;
    __builtin_memcpy(&pair, p, sizeof pair);
    return reinterpret_cast<vfloat>(pair - vdouble{});  // as broadcast: one vbroadcastsd (movddup with SSE3)
  }
#if defined(__AVX512F__)
  // Masked with every lane set, as vmax: g++ 12 passes an undefined vector to the unmasked forms too.
  else if constexpr (n == 4) {
    return reinterpret_cast<vfloat>(_mm512_maskz_broadcast_f32x4(0xFFFF, _mm_loadu_ps(p)));
  } else if constexpr (n == 8) {
    const __m256d half = _mm256_loadu_pd(reinterpret_cast<const double*>(p));
    return reinterpret_cast<vfloat>(_mm512_maskz_broadcast_f64x4(0xFF, half));
  }
#elif defined(__AVX__)
  else if constexpr (n == 4) {
    return reinterpret_cast<vfloat>(_mm256_broadcast_ps(reinterpret_cast<const __m128*>(p)));
  }
#endif
  else {
    return load_repeated_first<n>(p, n);
  }
}

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

// x rounded towards zero to an integer (for |x| < 2^31): a conversion to int and back.
inline vfloat vtrunc(vfloat x) { return __builtin_convertvector(__builtin_convertvector(x, vint), vfloat); }

// x rounded down to an integer, for |x| < 2^31 (and NaN for NaN): one instruction from SSE4.1 on; plain SSE
// truncates towards zero (vtrunc) and steps down where that rounded up.
inline vfloat vfloor(vfloat x) {
#if defined(__AVX512F__)
  constexpr int down = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
  const __m512 x512 = reinterpret_cast<__m512>(x);
  return reinterpret_cast<vfloat>(_mm512_mask_roundscale_ps(x512, 0xFFFF, x512, down));
#elif defined(__AVX__)
  return reinterpret_cast<vfloat>(_mm256_floor_ps(reinterpret_cast<__m256>(x)));
#elif defined(__SSE4_1__)
  return reinterpret_cast<vfloat>(_mm_floor_ps(reinterpret_cast<__m128>(x)));
#else
  const vfloat t = vtrunc(x);
  return t > x ? t - 1.0f : t;
#endif
}

#if defined(__AVX512F__)
// y 2^n for integral n, rounded once (vscalefps): AVX-512 only; vmath.hpp builds 2^n in the exponent bits elsewhere.
inline vfloat vscalef(vfloat y, vfloat n) {
  const __m512 y512 = reinterpret_cast<__m512>(y);
  return reinterpret_cast<vfloat>(_mm512_mask_scalef_ps(y512, 0xFFFF, y512, reinterpret_cast<__m512>(n)));
}
#endif

}  // namespace kiln::et
