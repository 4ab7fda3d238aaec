// LayerNorm's and RMSNorm's forward, over rows of the normalised size (the product of their Sizes). Row
// statistics are summed in SIMD partial sums (two passes for the variance), which keeps them within
// PyTorch's tolerance for rows of thousands of values.
#pragma once

#include <kiln/dsl/layers/norms.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

#include <cmath>

namespace kiln::et {

#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that `i + simd_width` could overflow after 2^62 iterations; row sizes are far below that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
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

// LayerNorm's gradient per row: with xhat = (x - mean) rstd and g = dy * weight,
// dx = rstd (g - mean(g) - xhat mean(g xhat)); dweight += dy xhat; dbias += dy.
inline void layer_norm_backward(const float* x, const float* dy, float* dx, index_t rows, index_t size, float eps,
                                const float* weight, float* dweight, float* dbias) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    const float* dyr = dy + r * size;
    double sum = 0, sq = 0;
    for (index_t i = 0; i < size; ++i) sum += xr[i];
    const double mean = sum / static_cast<double>(size);
    for (index_t i = 0; i < size; ++i) sq += (xr[i] - mean) * (xr[i] - mean);
    const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(size) + eps);
    double mean_g = 0, mean_gx = 0;
    for (index_t i = 0; i < size; ++i) {
      const double xhat = (xr[i] - mean) * rstd, g = weight ? dyr[i] * weight[i] : dyr[i];
      mean_g += g;
      mean_gx += g * xhat;
      if (dweight) dweight[i] += static_cast<float>(dyr[i] * xhat);
      if (dbias) dbias[i] += dyr[i];
    }
    mean_g /= static_cast<double>(size);
    mean_gx /= static_cast<double>(size);
    if (dx)
      for (index_t i = 0; i < size; ++i) {
        const double xhat = (xr[i] - mean) * rstd, g = weight ? dyr[i] * weight[i] : dyr[i];
        dx[r * size + i] = static_cast<float>(rstd * (g - mean_g - xhat * mean_gx));
      }
  }
}

// RMSNorm's gradient per row: y = x inv weight with inv = 1/sqrt(ms + eps) (or 1/(sqrt(ms) + eps)),
// ms = mean(x^2); with g = dy * weight, dx = g inv + x d(inv)/d(ms) 2 mean(g x); dweight += dy x inv.
inline void rms_norm_backward(const float* x, const float* dy, float* dx, index_t rows, index_t size, float eps,
                              bool eps_added_to_rms, const float* weight, float* dweight) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * size;
    const float* dyr = dy + r * size;
    double sq = 0;
    for (index_t i = 0; i < size; ++i) sq += static_cast<double>(xr[i]) * xr[i];
    const double ms = sq / static_cast<double>(size);
    const double rms = std::sqrt(eps_added_to_rms ? ms : ms + eps);
    const double inv = eps_added_to_rms ? 1.0 / (rms + eps) : 1.0 / rms;
    // d(inv)/d(ms): -inv^3 / 2 inside the root; -inv^2 / (2 rms) with eps added to the RMS.
    const double dinv_dms = eps_added_to_rms ? -inv * inv / (2.0 * rms) : -0.5 * inv * inv * inv;
    double gx = 0;
    for (index_t i = 0; i < size; ++i) {
      const double g = weight ? dyr[i] * weight[i] : dyr[i];
      gx += g * xr[i];
      if (dweight) dweight[i] += static_cast<float>(dyr[i] * xr[i] * inv);
    }
    const double k = dinv_dms * 2.0 * gx / static_cast<double>(size);
    if (dx)
      for (index_t i = 0; i < size; ++i) {
        const double g = weight ? dyr[i] * weight[i] : dyr[i];
        dx[r * size + i] = static_cast<float>(g * inv + xr[i] * k);
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
