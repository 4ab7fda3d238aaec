// The losses on a tile of output rows: each returns the tile's share of the loss and writes dL/dy, so the
// backward pass can start on the tile while it is still in cache.
#pragma once

#include <kiln/dsl/losses.hpp>
#include <kiln/et/vmath.hpp>

#include <cmath>
#include <cstdint>

namespace kiln::et {

// What the training driver needs to know about the loss of one call.
struct LossTerm {
  enum class Kind { cross_entropy, mse, upstream };
  Kind kind = Kind::upstream;
  const std::int64_t* classes = nullptr;  // cross_entropy: [batch]
  const float* targets = nullptr;         // mse: [batch, out]; upstream: dL/dy [batch, out]
  float label_smoothing = 0.0f;
  double scale = 1.0;                     // 1/N (or 1/numel) for mean, 1 for sum
};

// Rows [0, n) of logits y [n, classes] with their targets: the loss (times scale) and dy.
// loss_r = (1 - e)(lse - y_t) + e/C sum_c (lse - y_c); dy = (softmax(y) - (1 - e) one_hot(t) - e/C) scale.
inline double cross_entropy_tile(const float* y, const std::int64_t* targets, index_t n, index_t classes,
                                 float smoothing, double scale, float* dy) {
  double total = 0;
  for (index_t r = 0; r < n; ++r) {
    const float* yr = y + r * classes;
    float* dr = dy + r * classes;
    float m = yr[0];
    for (index_t c = 1; c < classes; ++c) m = std::max(m, yr[c]);
    double sum = 0, sum_y = 0;
    for (index_t c = 0; c < classes; ++c) {
      sum += std::exp(static_cast<double>(yr[c]) - m);
      sum_y += yr[c];
    }
    const double lse = m + std::log(sum);
    const index_t t = static_cast<index_t>(targets[r]);
    const double e = smoothing;
    total += (1 - e) * (lse - yr[t]) + e / static_cast<double>(classes) * (static_cast<double>(classes) * lse - sum_y);
    for (index_t c = 0; c < classes; ++c) {
      const double target = (c == t ? 1 - e : 0.0) + e / static_cast<double>(classes);
      dr[c] = static_cast<float>((std::exp(yr[c] - lse) - target) * scale);
    }
  }
  return total * scale;
}

// sum((y - t)^2) * scale over `count` values; dy = 2 (y - t) scale.
inline double mse_tile(const float* y, const float* targets, index_t count, double scale, float* dy) {
  double total = 0;
  for (index_t i = 0; i < count; ++i) {
    const double d = static_cast<double>(y[i]) - targets[i];
    total += d * d;
    dy[i] = static_cast<float>(2 * d * scale);
  }
  return total * scale;
}

}  // namespace kiln::et
