// The small-batch training benchmark's data set (bench/train_small_batch.cpp; bench/train_small_batch_pytorch.py
// builds the same numbers): 16384 samples of 64 features in 10 classes, clusters around class centres with
// deterministic noise. Synthetic on purpose: no download, and a data set Kiln trains on nowhere else.
#pragma once

#include <kiln/kiln.hpp>

#include <cmath>

namespace kiln::bench {

inline constexpr index_t small_batch_samples = 16384, small_batch_features = 64, small_batch_classes = 10;

// x[i, f] = sin(1.7 c + 0.9 f) + 0.8 frac(sin(12.9898 i + 78.233 f) * 43758.5453) - 0.4, c = i % 10 (in double,
// rounded to float), y[i] = c.
inline void make_small_batch_data(Tensor& x, Tensor& y) {
  x = Tensor({small_batch_samples, small_batch_features});
  y = Tensor({small_batch_samples}, DType::int64);
  for (index_t i = 0; i < small_batch_samples; ++i) {
    const index_t c = i % small_batch_classes;
    y.data_i64()[i] = c;
    for (index_t f = 0; f < small_batch_features; ++f) {
      const double h = std::sin(12.9898 * static_cast<double>(i) + 78.233 * static_cast<double>(f)) * 43758.5453;
      const double noise = 0.8 * (h - std::floor(h)) - 0.4;
      x.data()[i * small_batch_features + f] =
          static_cast<float>(std::sin(1.7 * static_cast<double>(c) + 0.9 * static_cast<double>(f)) + noise);
    }
  }
}

}  // namespace kiln::bench
