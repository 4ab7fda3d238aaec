// Softmax<Dim>: exp(x - max) / sum(exp(x - max)) along Dim (torch.nn.Softmax), and LogSoftmax<Dim>:
// x - max - log(sum(exp(x - max))) (torch.nn.LogSoftmax). Dim counts the batch dim as PyTorch does
// (Softmax<1> on [N, C] is over C); negative dims count from the end.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

namespace kiln::nn {

// What both share: the shape rule (one per-sample dim), and that dim as the attribute "axis".
template <int Dim>
struct AlongDim {
  static constexpr int dim = Dim;

  static constexpr Shaped infer(Dims in) {
    const int d = sample_dim(Dim, in.rank);
    if (d == -2)
      return Shaped::fails(Text{"has dim "} + Dim + ", out of range for an input of rank " + (in.rank + 1) + " " +
                           in.text());
    if (d == -1)
      return Shaped::fails(Text{"would normalise over the batch dim of "} + in.text() +
                           "; in a network it works per sample (use kiln::F for dim 0)");
    return Shaped::fits(in);
  }
  // The per-sample dim it runs along, for an input of the given per-sample rank.
  static constexpr int axis(Dims in) { return sample_dim(Dim, in.rank); }
  constexpr ParamList params(Dims) const { return {}; }
  constexpr Attributes attributes(Dims in) const { return Attributes{}.add("axis", axis(in)); }
  constexpr index_t flops(Dims in) const { return in.numel() * 5; }
};

template <int Dim>
struct Softmax : AlongDim<Dim> {
  static constexpr std::string_view kind = "softmax";
  static constexpr Text name() { return Text{"Softmax<"} + Dim + ">"; }
  std::string repr() const { return fmt::format("Softmax(dim={})", Dim); }
};

template <int Dim>
struct LogSoftmax : AlongDim<Dim> {
  static constexpr std::string_view kind = "log_softmax";
  static constexpr Text name() { return Text{"LogSoftmax<"} + Dim + ">"; }
  std::string repr() const { return fmt::format("LogSoftmax(dim={})", Dim); }
};

}  // namespace kiln::nn
