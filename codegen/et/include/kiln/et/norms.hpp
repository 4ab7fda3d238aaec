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

// Calls f(i, load_at, store_at, chain) for each block of simd_width values of a row of `size`, the last one
// partial: load_at loads and store_at stores a block, whole or its first size - i values. Whole blocks alternate
// between chains 0 and 1, so that a sum kept per chain is two chains of adds, not one that waits on each add
// (LayerNorm<256>'s backward at batch 256 on Zen 5: 18.2-20.2 -> 15.1-15.4 us).
template <class F>
inline void for_row_blocks(index_t size, F f) {
  constexpr auto load_whole = [](const float* p) { return load(p); };
  constexpr auto store_whole = [](float* p, vfloat v) { store(p, v); };
  index_t i = 0;
  for (; i + 2 * simd_width <= size; i += 2 * simd_width) {
    f(i, load_whole, store_whole, 0);
    f(i + simd_width, load_whole, store_whole, 1);
  }
  for (; i < size; i += simd_width) {
    const long n = std::min<index_t>(simd_width, size - i);
    f(i, [n](const float* p) { return load_first(p, n); }, [n](float* p, vfloat v) { store_first(p, v, n); }, 0);
  }
}

// LayerNorm's gradient per row: with xhat = (x - mean) rstd and g = dy * weight,
// dx = rstd (g - mean(g) - xhat mean(g xhat)); dweight += dy xhat; dbias += dy. In float SIMD partial sums, as
// PyTorch's CPU kernel accumulates in float (in double, one element at a time, it was a quarter of a small-batch
// training step), with the forward's statistics.
inline void layer_norm_backward(const float* x, const float* dy, float* dx, index_t rows, index_t size, float eps,
                                const float* weight, float* dweight, float* dbias) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    const float* dyr = dy + r * size;
    const auto [mean, rstd] = layer_norm_stats(xr, size, eps);
    vfloat sum_g[2] = {}, sum_gx[2] = {};
    for_row_blocks(size, [&](index_t i, auto load_at, auto store_at, int chain) {
      const vfloat d = load_at(dyr + i), xhat = (load_at(xr + i) - mean) * rstd;
      const vfloat g = weight ? d * load_at(weight + i) : d;
      sum_g[chain] += g;
      sum_gx[chain] += g * xhat;
      if (dweight) store_at(dweight + i, load_at(dweight + i) + d * xhat);
      if (dbias) store_at(dbias + i, load_at(dbias + i) + d);
    });
    if (!dx) continue;
    const float mean_g = lane_sum(sum_g[0] + sum_g[1]) / static_cast<float>(size);
    const float mean_gx = lane_sum(sum_gx[0] + sum_gx[1]) / static_cast<float>(size);
    for_row_blocks(size, [&](index_t i, auto load_at, auto store_at, int) {
      const vfloat d = load_at(dyr + i), xhat = (load_at(xr + i) - mean) * rstd;
      const vfloat g = weight ? d * load_at(weight + i) : d;
      store_at(dx + r * size + i, rstd * (g - mean_g - xhat * mean_gx));
    });
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
    vfloat gx[2] = {};
    for_row_blocks(size, [&](index_t i, auto load_at, auto store_at, int chain) {
      const vfloat d = load_at(dyr + i), v = load_at(xr + i);
      gx[chain] += (weight ? d * load_at(weight + i) : d) * v;
      if (dweight) store_at(dweight + i, load_at(dweight + i) + d * v * inv);
    });
    if (!dx) continue;
    const float k = dinv_dms * 2.0f * lane_sum(gx[0] + gx[1]) / static_cast<float>(size);
    for_row_blocks(size, [&](index_t i, auto load_at, auto store_at, int) {
      const vfloat d = load_at(dyr + i), v = load_at(xr + i);
      store_at(dx + r * size + i, (weight ? d * load_at(weight + i) : d) * inv + v * k);
    });
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
