// This CPU's single-core FP32 FMA peak (GFLOP/s), measured with independent FMA chains on the widest vectors
// the CPU has; also each narrower kernel the CPU supports, for context. kiln_vs_torch measures the same peak
// at start (fma_peak.hpp) to report each result as a fraction of it.
//
//   build-bench/bench/kiln_fma_peak
#include "fma_peak.hpp"

#include <fmt/format.h>

#include <string_view>

int main() {
  const kiln::bench::FmaPeak peak = kiln::bench::measure_fma_peak(0.2, 5);
  fmt::print("single-core FP32 peak: {:.1f} GFLOP/s ({}, {} independent chains, best of 5 x 0.2 s)\n", peak.gflops,
             peak.isa, std::string_view{peak.isa}.starts_with("AVX-512") ? 16 : 12);
#ifdef KILN_BENCH_X86
  namespace d = kiln::bench::detail;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    fmt::print("  AVX2 FMA (8 lanes):     {:.1f} GFLOP/s\n", d::best_gflops(d::fma_chains_avx2, 8, d::fma_chains_narrow, 0.2, 3));
  fmt::print("  SSE mul+add (4 lanes):  {:.1f} GFLOP/s\n", d::best_gflops(d::fma_chains_sse, 4, d::fma_chains_narrow, 0.2, 3));
#endif
}
