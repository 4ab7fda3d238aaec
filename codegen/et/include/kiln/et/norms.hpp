// LayerNorm's and RMSNorm's forward, over rows of the normalised size (the product of their Sizes). Row
// statistics are summed in SIMD partial sums (two passes for the variance), which keeps them within
// PyTorch's tolerance for rows of thousands of values.
#pragma once

#include <kiln/dsl/layers/norms.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

#include <cmath>

namespace kiln::et {

// (x - mean) / sqrt(var_biased + eps) * weight + bias, per row of `size` values. x and y may be the same.
inline void layer_norm_forward(const float* x, float* y, index_t rows, index_t size, float eps, const float* weight,
                               const float* bias) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    float* yr = y + r * size;
    const float mean = sum_vectors(xr, size) / static_cast<float>(size);
    vfloat acc{};
    index_t i = 0;
    for (; i + simd_width <= size; i += simd_width) {
      const vfloat d = load(xr + i) - mean;
      acc += d * d;
    }
    float sq = 0;
    for (int l = 0; l < simd_width; ++l) sq += acc[l];
    for (; i < size; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(size) + eps);
    i = 0;
    for (; i + simd_width <= size; i += simd_width) {
      vfloat v = (load(xr + i) - mean) * rstd;
      if (weight) v *= load(weight + i);
      if (bias) v += load(bias + i);
      store(yr + i, v);
    }
    for (; i < size; ++i) {
      float v = (xr[i] - mean) * rstd;
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
    vfloat acc{};
    index_t i = 0;
    for (; i + simd_width <= size; i += simd_width) {
      const vfloat v = load(xr + i);
      acc += v * v;
    }
    float sq = 0;
    for (int l = 0; l < simd_width; ++l) sq += acc[l];
    for (; i < size; ++i) sq += xr[i] * xr[i];
    const float ms = sq / static_cast<float>(size);
    const float inv = eps_added_to_rms ? 1.0f / (std::sqrt(ms) + eps) : 1.0f / std::sqrt(ms + eps);
    i = 0;
    for (; i + simd_width <= size; i += simd_width) {
      vfloat v = load(xr + i) * inv;
      if (weight) v *= load(weight + i);
      store(yr + i, v);
    }
    for (; i < size; ++i) yr[i] = weight ? xr[i] * inv * weight[i] : xr[i] * inv;
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
