// LayerNorm's and RMSNorm's forward, over rows of the normalised size (the product of their Sizes).
// Row statistics are accumulated in double: they are cheap next to the matmuls, and keep Kiln within
// PyTorch's tolerance for wide rows.
#pragma once

#include <kiln/dsl/layers/norms.hpp>
#include <kiln/et/eval.hpp>

#include <cmath>

namespace kiln::et {

// (x - mean) / sqrt(var_biased + eps) * weight + bias, per row of `size` values.
inline void layer_norm_forward(const float* x, float* y, index_t rows, index_t size, float eps, const float* weight,
                               const float* bias) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    float* yr = y + r * size;
    double sum = 0;
    for (index_t i = 0; i < size; ++i) sum += xr[i];
    const double mean = sum / static_cast<double>(size);
    double sq = 0;
    for (index_t i = 0; i < size; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(size) + eps);
    for (index_t i = 0; i < size; ++i) {
      float v = static_cast<float>((xr[i] - mean) * rstd);
      if (weight) v *= weight[i];
      if (bias) v += bias[i];
      yr[i] = v;
    }
  }
}

// x / sqrt(mean(x^2) + eps) * weight, or with eps added to the RMS: x / (sqrt(mean(x^2)) + eps) * weight.
inline void rms_norm_forward(const float* x, float* y, index_t rows, index_t size, float eps, bool eps_added_to_rms,
                             const float* weight) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    float* yr = y + r * size;
    double sq = 0;
    for (index_t i = 0; i < size; ++i) sq += static_cast<double>(xr[i]) * xr[i];
    const double ms = sq / static_cast<double>(size);
    const double inv = eps_added_to_rms ? 1.0 / (std::sqrt(ms) + eps) : 1.0 / std::sqrt(ms + eps);
    for (index_t i = 0; i < size; ++i) {
      float v = static_cast<float>(xr[i] * inv);
      if (weight) v *= weight[i];
      yr[i] = v;
    }
  }
}

template <index_t... Sizes>
struct Eval<nn::LayerNorm<Sizes...>> {
  using Layer = nn::LayerNorm<Sizes...>;
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward(const Layer& ln, Dims in, const LayerParams& p, const float* x, float* y, index_t samples,
                      const TileContext&) {
    constexpr index_t size = (Sizes * ...);
    layer_norm_forward(x, y, samples * (in.numel() / size), size, ln.eps, ln.elementwise_affine ? p.weight : nullptr,
                       ln.elementwise_affine && ln.bias ? p.bias : nullptr);
  }
};

template <index_t... Sizes>
struct Eval<nn::RMSNorm<Sizes...>> {
  using Layer = nn::RMSNorm<Sizes...>;
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward(const Layer& rms, Dims in, const LayerParams& p, const float* x, float* y, index_t samples,
                      const TileContext&) {
    constexpr index_t size = (Sizes * ...);
    rms_norm_forward(x, y, samples * (in.numel() / size), size, rms.eps_value(),
                     rms.eps_placement == nn::RMSNormEps::added_to_rms, rms.elementwise_affine ? p.weight : nullptr);
  }
};

}  // namespace kiln::et
