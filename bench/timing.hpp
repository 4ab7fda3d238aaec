// Timing helpers the benchmarks share.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace kiln::bench {

// The time of calls too short to time one by one: the best, over `loops` loops of `iterations` calls each, of
// the time per call in microseconds (the best, not the median: the host slows loops, it never speeds them up).
template <class F>
double best_us(F&& call, int iterations, int loops = 7) {
  double best = 1e300;
  for (int loop = 0; loop < loops; ++loop) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) call();
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count() / iterations);
  }
  return best;
}

// The median of timings that each cover one event (a compile, an epoch, one call's start): the upper one of an
// even count.
inline double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace kiln::bench
