// How long one thread takes to read `bytes` of memory, warm: the bound of a batch-1 forward pass, which must
// read every weight once. Two orders (`Order`):
// - best: forwards and backwards on alternate passes, as the fused kernel reads each layer's weights
//   (linear_forward): what was read last is read first, still in L2, so a buffer somewhat larger than L2 stays
//   mostly in it. A network cannot read all its weights that way: its first layer comes first on every call.
// - layer_order: forwards on every pass, the order a forward pass reads its layers in: a buffer larger than L2
//   evicts, pass after pass, what it is about to read (3 MB on the Intel Xeon model 167: 94 us against 58 best).
// The buffer is read in blocks of 8 vectors into independent sums.
//
//   const double us = kiln::bench::stream_read_us(kiln::parameter_count(net) * sizeof(float));
#pragma once

#include <kiln/et/simd.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace kiln::bench {

enum class Order { best, layer_order };

// Microseconds per pass: the median of `repetitions` timings of at least min_seconds each.
inline double stream_read_us(std::size_t bytes, Order order = Order::best, double min_seconds = 0.1,
                             int repetitions = 5) {
  using et::simd_width;
  using et::vfloat;
  constexpr std::size_t block = 8 * simd_width;  // floats per block
  const std::size_t blocks = std::max<std::size_t>(1, (bytes / sizeof(float) + block - 1) / block);
  std::vector<float> data(blocks * block, 1.0f);
  bool backwards = false;
  auto pass = [&] {
    vfloat sum[8] = {};
    for (std::size_t b = 0; b < blocks; ++b) {
      const float* p = data.data() + (backwards ? blocks - 1 - b : b) * block;
      for (int k = 0; k < 8; ++k) sum[k] += et::load(p + k * simd_width);
    }
    backwards = order == Order::best && !backwards;
    const vfloat total = sum[0] + sum[1] + sum[2] + sum[3] + sum[4] + sum[5] + sum[6] + sum[7];
    return total[0];
  };
  volatile float sink = 0;
  for (int i = 0; i < 50; ++i) sink = pass();  // warm: the buffer in cache as far as it fits
  std::vector<double> times;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    long passes = 0;
    double elapsed = 0;
    do {
      for (int i = 0; i < 64; ++i) sink = pass();
      passes += 64;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < min_seconds);
    times.push_back(elapsed * 1e6 / static_cast<double>(passes));
  }
  (void)sink;
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace kiln::bench
