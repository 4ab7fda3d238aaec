// BatchNorm1d<C>{eps, momentum, affine, track_running_stats} over [N, C] or [N, C, L] (torch.nn.BatchNorm1d).
// Train mode normalises with the batch mean and biased variance over N (and L) and updates the running stats
// (unbiased variance; momentum = std::nullopt is PyTorch's None, a cumulative average); eval mode uses the
// running stats. Without running stats (track_running_stats = false) both modes use batch statistics.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

#include <optional>

namespace kiln::nn {

template <index_t C>
struct BatchNorm1d {
  static_assert(C > 0, "BatchNorm1d<C>: C must be positive");
  static constexpr index_t num_features = C;

  float eps = 1e-5f;
  std::optional<float> momentum = 0.1f;  // std::nullopt: cumulative moving average
  bool affine = true;
  bool track_running_stats = true;

  static constexpr std::string_view kind = "batch_norm";

  static constexpr Text name() { return Text{"BatchNorm1d<"} + C + ">"; }
  static constexpr Shaped infer(Dims in) {
    if (in.rank != 1 && in.rank != 2)
      return Shaped::fails(Text{"expects an input [N, C] or [N, C, L] but receives "} + in.text());
    if (in.sizes[0] != C)
      return Shaped::fails(Text{"expects "} + C + " channels but receives " + in.sizes[0] + " (input " + in.text() + ")");
    return Shaped::fits(in);
  }
  constexpr ParamList params(Dims) const {
    ParamList p;
    if (affine) {
      p.add({Role::weight, Dims{C}, Init::ones});
      p.add({Role::bias, Dims{C}, Init::zeros});
    }
    if (track_running_stats) {
      p.add({Role::running_mean, Dims{C}, Init::zeros});
      p.add({Role::running_var, Dims{C}, Init::ones});
      p.add({Role::num_batches_tracked, Dims{}, Init::zeros});
    }
    return p;
  }
  // momentum None is written as NaN (a cumulative average).
  constexpr Attributes attributes(Dims) const {
    return Attributes{}
        .add("eps", eps)
        .add("momentum", momentum ? static_cast<double>(*momentum) : __builtin_nan(""))
        .add("affine", affine)
        .add("track_running_stats", track_running_stats);
  }
  constexpr index_t flops(Dims in) const { return in.numel() * 2; }
  // Whether this layer needs the statistics of the whole batch (and so splits the fused kernel).
  constexpr bool uses_batch_stats(bool training) const { return training || !track_running_stats; }
  std::string repr() const {
    return fmt::format("BatchNorm1d({}, eps={}, momentum={}, affine={}, track_running_stats={})", C, eps,
                       momentum ? fmt::format("{}", *momentum) : "None", affine ? "True" : "False",
                       track_running_stats ? "True" : "False");
  }
};

}  // namespace kiln::nn
