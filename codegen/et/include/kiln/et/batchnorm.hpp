// BatchNorm1d's forward. On a tile it is y = x * scale[c] + shift[c]; the driver computes scale and shift
// per call: from the running stats (eval), or from the statistics of the whole batch (train mode, or without
// running stats), in which case it also updates the running stats as PyTorch does.
#pragma once

#include <kiln/dsl/layers/batchnorm.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/shard.hpp>
#include <kiln/et/vmath.hpp>
#include <kiln/runtime/error.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace kiln::et {

// Per channel of x viewed as [n, channels, length]: the sum of the values (center null), or of their squared
// deviations from center[c], accumulated in double. The loops walk memory in order (sample, channel, position)
// with one accumulator per channel.
inline void batchnorm_channel_sums(const float* x, index_t n, index_t channels, index_t length, const double* center,
                                   double* out) {
  std::fill(out, out + channels, 0.0);
  if (length == 1) {  // [N, C]: rows of channels, summed as vectors across the channels
    if (!center) {
      for (index_t s = 0; s < n; ++s)
        for (index_t c = 0; c < channels; ++c) out[c] += x[s * channels + c];
      return;
    }
    for (index_t s = 0; s < n; ++s)
      for (index_t c = 0; c < channels; ++c) {
        const double d = x[s * channels + c] - center[c];
        out[c] += d * d;
      }
    return;
  }
  for (index_t s = 0; s < n; ++s)
    for (index_t c = 0; c < channels; ++c) {
      const float* xs = x + (s * channels + c) * length;
      double sum = 0;
      if (!center)
        for (index_t l = 0; l < length; ++l) sum += xs[l];
      else
        for (index_t l = 0; l < length; ++l) sum += (xs[l] - center[c]) * (xs[l] - center[c]);
      out[c] += sum;
    }
}

// Mean and biased variance per channel of x viewed as [n, channels, length]: two passes, in double.
inline void batchnorm_batch_stats(const float* x, index_t n, index_t channels, index_t length, double* mean,
                                  double* var) {
  const double count = static_cast<double>(n * length);
  batchnorm_channel_sums(x, n, channels, length, nullptr, mean);
  for (index_t c = 0; c < channels; ++c) mean[c] /= count;
  batchnorm_channel_sums(x, n, channels, length, mean, var);
  for (index_t c = 0; c < channels; ++c) var[c] /= count;
}

// Mean and biased variance per channel for one BatchNorm1d<C> call: over this batch, or with `sum_over_processes`
// (SyncBatchNorm, kiln::dist) over the global batch of a data-parallel step, each pass's sums and the count summed
// over every process before they are divided. Returns the count of values per channel they are taken over.
template <index_t C>
double batchnorm_call_stats(const float* x, index_t n, index_t length, double* mean, double* var,
                            const BatchStatsSum* sum_over_processes) {
  if (!sum_over_processes) {
    batchnorm_batch_stats(x, n, C, length, mean, var);
    return static_cast<double>(n * length);
  }
  std::array<double, C + 1> sums;  // per channel, then the count
  batchnorm_channel_sums(x, n, C, length, nullptr, sums.data());
  sums[C] = static_cast<double>(n * length);
  (*sum_over_processes)(sums.data(), C + 1);
  const double count = sums[C];
  for (index_t c = 0; c < C; ++c) mean[c] = sums[static_cast<std::size_t>(c)] / count;
  batchnorm_channel_sums(x, n, C, length, mean, var);
  (*sum_over_processes)(var, C);
  for (index_t c = 0; c < C; ++c) var[c] /= count;
  return count;
}

// scale = weight / sqrt(var + eps), shift = bias - mean * scale (weight 1, bias 0 without affine).
inline void batchnorm_scale_shift(index_t channels, const double* mean, const double* var, float eps,
                                  const float* weight, const float* bias, float* scale, float* shift) {
  for (index_t c = 0; c < channels; ++c) {
    const double invstd = 1.0 / std::sqrt(var[c] + static_cast<double>(eps));
    const double s = (weight ? weight[c] : 1.0) * invstd;
    scale[c] = static_cast<float>(s);
    shift[c] = static_cast<float>((bias ? bias[c] : 0.0) - mean[c] * s);
  }
}

// running = (1 - m) running + m batch, with the unbiased variance; m = 1 / num_batches_tracked when
// momentum is None (a cumulative average).
template <index_t C>
void batchnorm_update_running_stats(const nn::BatchNorm1d<C>& bn, const LayerParams& p, const double* mean,
                                    const double* var, index_t count) {
  if (!bn.track_running_stats) return;
  *p.num_batches_tracked += 1;
  const double m = bn.momentum ? static_cast<double>(*bn.momentum) : 1.0 / static_cast<double>(*p.num_batches_tracked);
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  for (index_t c = 0; c < C; ++c) {
    p.running_mean[c] = static_cast<float>((1 - m) * p.running_mean[c] + m * mean[c]);
    p.running_var[c] = static_cast<float>((1 - m) * p.running_var[c] + m * var[c] * unbias);
  }
}

template <index_t C>
struct Eval<nn::BatchNorm1d<C>> {
  using Layer = nn::BatchNorm1d<C>;
  static bool passes_through(const Layer&, bool) { return false; }

  // Values per channel in a batch of `samples` (N, or N * L).
  static index_t values_per_channel(Dims in, index_t samples) { return samples * (in.rank == 2 ? in.sizes[1] : 1); }

  // Fills scale and shift (C floats each) for this call. `x` is the whole batch, needed only when the layer
  // uses batch statistics; with `sum` (SyncBatchNorm, kiln::dist) they are the global batch's.
  static void prepare(const Layer& bn, Dims in, const LayerParams& p, bool training, const float* x, index_t samples,
                      float* scale, float* shift, const BatchStatsSum* sum = nullptr) {
    std::array<double, C> mean, var;  // on the stack: a call allocates nothing
    if (bn.uses_batch_stats(training)) {
      const index_t length = in.rank == 2 ? in.sizes[1] : 1;
      const auto count =
          static_cast<index_t>(batchnorm_call_stats<C>(x, samples, length, mean.data(), var.data(), sum));
      if (training) batchnorm_update_running_stats(bn, p, mean.data(), var.data(), count);
    } else {
      for (index_t c = 0; c < C; ++c) {
        mean[c] = p.running_mean[c];
        var[c] = p.running_var[c];
      }
    }
    batchnorm_scale_shift(C, mean.data(), var.data(), bn.eps, bn.affine ? p.weight : nullptr,
                          bn.affine ? p.bias : nullptr, scale, shift);
  }

  // Eval mode with running stats: a per-channel affine map on a tile. dx = dy * scale;
  // dweight += dy * xhat, dbias += dy, with xhat from the running stats.
  static void backward(const Layer& bn, Dims in, const LayerParams& p, const LayerGrads& g, const float* x,
                       const float*, const float* dy, float* dx, index_t samples, const TileContext&) {
    const index_t length = in.rank == 2 ? in.sizes[1] : 1;
    for (index_t s = 0; s < samples; ++s)
      for (index_t c = 0; c < C; ++c) {
        const double invstd = 1.0 / std::sqrt(static_cast<double>(p.running_var[c]) + bn.eps);
        for (index_t l = 0; l < length; ++l) {
          const index_t k = (s * C + c) * length + l;
          if (dx) dx[k] = dy[k] * p.scale[c];
          if (bn.affine && g.weight) g.weight[c] += static_cast<float>(dy[k] * (x[k] - p.running_mean[c]) * invstd);
          if (bn.affine && g.bias) g.bias[c] += dy[k];
        }
      }
  }

  // With batch statistics, over the whole batch: with xhat = (x - mean) invstd, g = dy * weight and M values
  // per channel, dx = invstd / M (M g - sum(g) - xhat sum(g xhat)); dweight += sum(dy xhat), dbias += sum(dy).
  // With `sum` (SyncBatchNorm): mean, invstd, M and the two sums in dx are the global batch's, as in PyTorch's
  // SyncBatchNorm; dweight and dbias are this process's own (the data-parallel step averages them).
  static void backward_batch(const Layer& bn, Dims in, const LayerParams& p, const LayerGrads& grads, const float* x,
                             const float* dy, float* dx, index_t samples, const BatchStatsSum* sum = nullptr) {
    const index_t length = in.rank == 2 ? in.sizes[1] : 1;
    std::vector<double> mean(C), var(C), invstd(C), sums(2 * C, 0.0);  // sums: sum(dy), then sum(dy xhat)
    double* sum_dy = sums.data();
    double* sum_dy_xhat = sums.data() + C;
    const double m = batchnorm_call_stats<C>(x, samples, length, mean.data(), var.data(), sum);
    for (index_t c = 0; c < C; ++c) invstd[c] = 1.0 / std::sqrt(var[c] + bn.eps);
    // f(k, c) for each value k (of channel c) in memory order. For [N, C] the channels are the inner loop, which
    // then runs as vectors across channels (a channel's sums keep their order): the Fashion-MNIST network's
    // training step spent 3% in this layer's scalar loops at batch 64.
    auto each_value = [&](auto&& f) {
      for (index_t s = 0; s < samples; ++s)
        if (length == 1)
          for (index_t c = 0; c < C; ++c) f(s * C + c, c);
        else
          for (index_t c = 0; c < C; ++c)
            for (index_t l = 0; l < length; ++l) f((s * C + c) * length + l, c);
    };
    each_value([&](index_t k, index_t c) {  // one accumulator per channel
      sum_dy[c] += dy[k];
      sum_dy_xhat[c] += dy[k] * (x[k] - mean[c]) * invstd[c];
    });
    for (index_t c = 0; c < C; ++c) {
      if (bn.affine && grads.weight) grads.weight[c] += static_cast<float>(sum_dy_xhat[c]);
      if (bn.affine && grads.bias) grads.bias[c] += static_cast<float>(sum_dy[c]);
    }
    if (!dx) return;
    if (sum) (*sum)(sums.data(), 2 * C);
    std::vector<double> k1(C);
    for (index_t c = 0; c < C; ++c) k1[c] = (bn.affine ? p.weight[c] : 1.0) * invstd[c] / m;
    each_value([&](index_t k, index_t c) {
      const double xhat = (x[k] - mean[c]) * invstd[c];
      dx[k] = static_cast<float>(k1[c] * (m * dy[k] - sum_dy[c] - xhat * sum_dy_xhat[c]));
    });
  }

  static void forward(const Layer&, Dims in, const LayerParams& p, const float* x, float* y, index_t samples,
                      const TileContext&) {
    const index_t length = in.rank == 2 ? in.sizes[1] : 1;
    if (length == 1) {  // [N, C]: vectors across channels
      for (index_t s = 0; s < samples; ++s) {
        const float* xs = x + s * C;
        float* ys = y + s * C;
        index_t c = 0;
        for (; c + simd_width <= C; c += simd_width) store(ys + c, load(xs + c) * load(p.scale + c) + load(p.shift + c));
        for (; c < C; ++c) ys[c] = xs[c] * p.scale[c] + p.shift[c];
      }
      return;
    }
    for (index_t s = 0; s < samples; ++s)
      for (index_t c = 0; c < C; ++c) {
        const float a = p.scale[c], b = p.shift[c];
        map_vectors(x + (s * C + c) * length, y + (s * C + c) * length, length, [a, b](vfloat v) { return v * a + b; });
      }
  }
};

}  // namespace kiln::et
