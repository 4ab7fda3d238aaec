// LayerNorm's and RMSNorm's forward, over rows of the normalised size (the product of their Sizes). Row
// statistics are summed in SIMD partial sums (two passes for the variance), which keeps them within
// PyTorch's tolerance for rows of thousands of values.
#pragma once

#include <kiln/dsl/layers/norms.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

#include <algorithm>
#include <cmath>

namespace kiln::et {

#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that `i + simd_width` could overflow after 2^62 iterations; row sizes are far below that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
struct RowStats {
  float mean, rstd;
};
// A row's mean and 1 / sqrt(biased variance + eps), the variance from the deviations (two passes).
inline RowStats layer_norm_stats(const float* xr, index_t size, float eps) {
  const float mean = sum_vectors(xr, size) / static_cast<float>(size);
  const float sq = sum_mapped(xr, size, [mean](auto v) { return (v - mean) * (v - mean); });
  return {mean, 1.0f / std::sqrt(sq / static_cast<float>(size) + eps)};
}

// (x - mean) / sqrt(var_biased + eps) * weight + bias, per row of `size` values. x and y may be the same.
inline void layer_norm_forward(const float* x, float* y, index_t rows, index_t size, float eps, const float* weight,
                               const float* bias) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    float* yr = y + r * size;
    const auto [mean, rstd] = layer_norm_stats(xr, size, eps);
    index_t i = 0;
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

inline constexpr auto square = [](auto v) { return v * v; };

// x / sqrt(mean(x^2) + eps) * weight, or with eps added to the RMS: x / (sqrt(mean(x^2)) + eps) * weight.
inline void rms_norm_forward(const float* x, float* y, index_t rows, index_t size, float eps, bool eps_added_to_rms,
                             const float* weight) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    float* yr = y + r * size;
    const float ms = sum_mapped(xr, size, square) / static_cast<float>(size);
    const float inv = eps_added_to_rms ? 1.0f / (std::sqrt(ms) + eps) : 1.0f / std::sqrt(ms + eps);
    index_t i = 0;
    for (; i + simd_width <= size; i += simd_width) {
      vfloat v = load(xr + i) * inv;
      if (weight) v *= load(weight + i);
      store(yr + i, v);
    }
    for (; i < size; ++i) yr[i] = weight ? xr[i] * inv * weight[i] : xr[i] * inv;
  }
}

// LayerNorm's gradient per row: with xhat = (x - mean) rstd and g = dy * weight,
// dx = rstd (g - mean(g) - xhat mean(g xhat)); dweight += dy xhat; dbias += dy. In float SIMD partial sums, as
// PyTorch's CPU kernel accumulates in float (in double, one element at a time, it was a quarter of a small-batch
// training step), with the forward's statistics. Blocks of simd_width lanes, the last one partial.
inline void layer_norm_backward(const float* x, const float* dy, float* dx, index_t rows, index_t size, float eps,
                                const float* weight, float* dweight, float* dbias) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    const float* dyr = dy + r * size;
    const auto [mean, rstd] = layer_norm_stats(xr, size, eps);
    vfloat sum_g{}, sum_gx{};
    for (index_t i = 0; i < size; i += simd_width) {
      const long n = std::min<index_t>(simd_width, size - i);
      const vfloat d = load_first(dyr + i, n), xhat = (load_first(xr + i, n) - mean) * rstd;
      const vfloat g = weight ? d * load_first(weight + i, n) : d;
      sum_g += g;
      sum_gx += g * xhat;
      if (dweight) store_first(dweight + i, load_first(dweight + i, n) + d * xhat, n);
      if (dbias) store_first(dbias + i, load_first(dbias + i, n) + d, n);
    }
    if (!dx) continue;
    const float mean_g = lane_sum(sum_g) / static_cast<float>(size), mean_gx = lane_sum(sum_gx) / static_cast<float>(size);
    for (index_t i = 0; i < size; i += simd_width) {
      const long n = std::min<index_t>(simd_width, size - i);
      const vfloat d = load_first(dyr + i, n), xhat = (load_first(xr + i, n) - mean) * rstd;
      const vfloat g = weight ? d * load_first(weight + i, n) : d;
      store_first(dx + r * size + i, rstd * (g - mean_g - xhat * mean_gx), n);
    }
  }
}

// RMSNorm's gradient per row: y = x inv weight with inv = 1/sqrt(ms + eps) (or 1/(sqrt(ms) + eps)),
// ms = mean(x^2); with g = dy * weight, dx = g inv + x d(inv)/d(ms) 2 mean(g x); dweight += dy x inv.
// In float SIMD partial sums, as LayerNorm's.
inline void rms_norm_backward(const float* x, const float* dy, float* dx, index_t rows, index_t size, float eps,
                              bool eps_added_to_rms, const float* weight, float* dweight) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    const float* dyr = dy + r * size;
    const float ms = sum_mapped(xr, size, square) / static_cast<float>(size);  // the forward's, bit for bit
    const float rms = std::sqrt(eps_added_to_rms ? ms : ms + eps);
    const float inv = eps_added_to_rms ? 1.0f / (rms + eps) : 1.0f / rms;
    // d(inv)/d(ms): -inv^3 / 2 inside the root; -inv^2 / (2 rms) with eps added to the RMS.
    const float dinv_dms = eps_added_to_rms ? -inv * inv / (2.0f * rms) : -0.5f * inv * inv * inv;
    vfloat gx{};
    for (index_t i = 0; i < size; i += simd_width) {
      const long n = std::min<index_t>(simd_width, size - i);
      const vfloat d = load_first(dyr + i, n), v = load_first(xr + i, n);
      gx += (weight ? d * load_first(weight + i, n) : d) * v;
      if (dweight) store_first(dweight + i, load_first(dweight + i, n) + d * v * inv, n);
    }
    if (!dx) continue;
    const float k = dinv_dms * 2.0f * lane_sum(gx) / static_cast<float>(size);
    for (index_t i = 0; i < size; i += simd_width) {
      const long n = std::min<index_t>(simd_width, size - i);
      const vfloat d = load_first(dyr + i, n), v = load_first(xr + i, n);
      store_first(dx + r * size + i, (weight ? d * load_first(weight + i, n) : d) * inv + v * k, n);
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

template <index_t... Sizes>
struct Eval<nn::LayerNorm<Sizes...>> {
  static void backward(const nn::LayerNorm<Sizes...>& ln, Dims in, const LayerParams& p, const LayerGrads& g,
                       const float* x, const float*, const float* dy, float* dx, index_t samples, const TileContext&) {
    constexpr index_t size = (Sizes * ...);
    const bool affine = ln.elementwise_affine;
    layer_norm_backward(x, dy, dx, samples * (in.numel() / size), size, ln.eps, affine ? p.weight : nullptr,
                        affine ? g.weight : nullptr, affine && ln.bias ? g.bias : nullptr);
  }
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
  static void backward(const nn::RMSNorm<Sizes...>& rms, Dims in, const LayerParams& p, const LayerGrads& g,
                       const float* x, const float*, const float* dy, float* dx, index_t samples, const TileContext&) {
    constexpr index_t size = (Sizes * ...);
    const bool affine = rms.elementwise_affine;
    rms_norm_backward(x, dy, dx, samples * (in.numel() / size), size, rms.eps_value(),
                      rms.eps_placement == nn::RMSNormEps::added_to_rms, affine ? p.weight : nullptr,
                      affine ? g.weight : nullptr);
  }
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
