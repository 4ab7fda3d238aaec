// The time of calls too short to time one by one: the best, over `loops` loops of `iterations` calls each, of
// the time per call in microseconds (the best, not the median: the host slows loops, it never speeds them up).
#pragma once

#include <algorithm>
#include <chrono>

namespace kiln::bench {

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

}  // namespace kiln::bench
