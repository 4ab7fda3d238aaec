// This CPU's single-core FP32 FMA peak, measured: independent FMA chains on the widest vectors the CPU has
// (AVX-512, else AVX2+FMA, else SSE2 multiply-add), on the calling thread. The kernels are compiled with target
// attributes and picked at run time, so the number is the machine's, whatever -march the benchmark was built
// with. Enough chains to cover the FMA latency on every unit of the x86 cores in use (2 units x 4 cycles = 8
// in flight): 16 with AVX-512's 32 registers, 12 with AVX2's and SSE's 16 (16 chains there would spill, since
// the multiplier and addend take two registers).
//
//   const kiln::bench::FmaPeak peak = kiln::bench::measure_fma_peak();   // peak.gflops, peak.isa
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KILN_BENCH_X86 1
#endif

namespace kiln::bench {

struct FmaPeak {
  double gflops = 0;        // single core, FP32, FMA counted as 2 flops
  const char* isa = "none";  // which kernel measured it
};

namespace detail {

inline constexpr int fma_chains_wide = 16;  // AVX-512: 32 vector registers
inline constexpr int fma_chains_narrow = 12;  // AVX2, SSE: 16 vector registers

#ifdef KILN_BENCH_X86
// Each runs `iterations` rounds of its independent chains a = a * m + c, and returns the sum of its accumulators
// so that nothing is optimised away.
__attribute__((target("avx512f"), noinline)) inline float fma_chains_avx512(std::int64_t iterations, float m, float c) {
  constexpr int n = fma_chains_wide;
  __m512 acc[n];
  for (int i = 0; i < n; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < n; ++i) acc[i] = _mm512_fmadd_ps(acc[i], vm, vc);
  }
  __m512 s = acc[0];
  for (int i = 1; i < n; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  float r = 0;
  for (float v : out) r += v;
  return r;
}

__attribute__((target("avx2,fma"), noinline)) inline float fma_chains_avx2(std::int64_t iterations, float m, float c) {
  constexpr int n = fma_chains_narrow;
  __m256 acc[n];
  for (int i = 0; i < n; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 vm = _mm256_set1_ps(m), vc = _mm256_set1_ps(c);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < n; ++i) acc[i] = _mm256_fmadd_ps(acc[i], vm, vc);
  }
  __m256 s = acc[0];
  for (int i = 1; i < n; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  float r = 0;
  for (float v : out) r += v;
  return r;
}

// No FMA: a multiply and an add per element (still 2 flops).
__attribute__((noinline)) inline float fma_chains_sse(std::int64_t iterations, float m, float c) {
  constexpr int n = fma_chains_narrow;
  __m128 acc[n];
  for (int i = 0; i < n; ++i) acc[i] = _mm_set1_ps(static_cast<float>(i));
  const __m128 vm = _mm_set1_ps(m), vc = _mm_set1_ps(c);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < n; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], vm), vc);
  }
  __m128 s = acc[0];
  for (int i = 1; i < n; ++i) s = _mm_add_ps(s, acc[i]);
  alignas(16) float out[4];
  _mm_store_ps(out, s);
  return out[0] + out[1] + out[2] + out[3];
}
#endif

// Best of `trials` timed runs of about `seconds_per_trial` each, of a kernel with `chains` chains of `lanes`
// floats.
template <class Kernel>
double best_gflops(Kernel kernel, int lanes, int chains, double seconds_per_trial, int trials) {
  using clock = std::chrono::steady_clock;
  volatile float m_in = 0.999999f, c_in = 1e-6f;  // opaque to the compiler; the chains converge to 1
  const float m = m_in, c = c_in;
  volatile float sink = 0;
  // Calibrate the iteration count to the trial length.
  std::int64_t iterations = 1 << 16;
  for (;;) {
    const auto t0 = clock::now();
    sink = sink + kernel(iterations, m, c);
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    if (s > seconds_per_trial / 4 || iterations > (std::int64_t{1} << 40)) {
      iterations = static_cast<std::int64_t>(static_cast<double>(iterations) * seconds_per_trial / std::max(s, 1e-9));
      break;
    }
    iterations *= 4;
  }
  double best = 0;
  for (int t = 0; t < trials; ++t) {
    const auto t0 = clock::now();
    sink = sink + kernel(iterations, m, c);
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::max(best, 2.0 * lanes * chains * static_cast<double>(iterations) / s * 1e-9);
  }
  return best;
}

}  // namespace detail

// About trials * seconds_per_trial seconds (plus calibration).
inline FmaPeak measure_fma_peak(double seconds_per_trial = 0.1, int trials = 5) {
#ifdef KILN_BENCH_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    return {detail::best_gflops(detail::fma_chains_avx512, 16, detail::fma_chains_wide, seconds_per_trial, trials), "AVX-512 FMA"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {detail::best_gflops(detail::fma_chains_avx2, 8, detail::fma_chains_narrow, seconds_per_trial, trials), "AVX2 FMA"};
  return {detail::best_gflops(detail::fma_chains_sse, 4, detail::fma_chains_narrow, seconds_per_trial, trials), "SSE mul+add"};
#else
  (void)seconds_per_trial;
  (void)trials;
  return {};
#endif
}

}  // namespace kiln::bench
