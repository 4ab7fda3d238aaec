// Flatten<Start, End>, Unflatten<Dim, Sizes...> and Identity: views, no data moves (torch.nn.Flatten, Unflatten,
// Identity).
// Dims count the batch dim as PyTorch does; in a network both work per sample, so they may not touch dim 0.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

namespace kiln::nn {

template <int Start = 1, int End = -1>
struct Flatten {
  static constexpr int start_dim = Start;
  static constexpr int end_dim = End;
  static constexpr std::string_view kind = "flatten";

  static constexpr Text name() { return Text{"Flatten<"} + Start + ", " + End + ">"; }
  static constexpr Shaped infer(Dims in) {
    const int s = sample_dim(Start, in.rank), e = sample_dim(End, in.rank);
    if (s == -2 || e == -2)
      return Shaped::fails(Text{"has dims out of range for an input of rank "} + (in.rank + 1) + " " + in.text());
    if (s == -1 || e == -1)
      return Shaped::fails(Text{"would merge the batch dim of "} + in.text() + "; in a network Flatten works per sample");
    if (s > e) return Shaped::fails(Text{"has start_dim after end_dim for "} + in.text());
    Dims out;
    for (int i = 0; i < s; ++i) out.sizes[out.rank++] = in.sizes[i];
    out.sizes[out.rank++] = in.product(s, e + 1);
    for (int i = e + 1; i < in.rank; ++i) out.sizes[out.rank++] = in.sizes[i];
    return Shaped::fits(out);
  }
  constexpr ParamList params(Dims) const { return {}; }
  constexpr Attributes attributes(Dims) const { return Attributes{}; }
  constexpr index_t flops(Dims) const { return 0; }
  std::string repr() const { return fmt::format("Flatten(start_dim={}, end_dim={})", Start, End); }
};

template <int Dim, index_t... Sizes>
struct Unflatten {
  static_assert(sizeof...(Sizes) > 0, "Unflatten<Dim, Sizes...> needs at least one size");
  static_assert(((Sizes > 0) && ...), "Unflatten<Dim, Sizes...>: sizes must be positive");
  static constexpr int dim = Dim;
  static constexpr std::string_view kind = "unflatten";

  static constexpr Text name() {
    Text t = Text{"Unflatten<"} + Dim;
    ((t += Text{", "} + Sizes), ...);
    return t + ">";
  }
  static constexpr index_t product() { return (Sizes * ...); }
  static constexpr Shaped infer(Dims in) {
    const int d = sample_dim(Dim, in.rank);
    if (d == -2) return Shaped::fails(Text{"has dim "} + Dim + ", out of range for an input of rank " + (in.rank + 1));
    if (d == -1)
      return Shaped::fails(Text{"would split the batch dim of "} + in.text() + "; in a network Unflatten works per sample");
    if (in.rank - 1 + static_cast<int>(sizeof...(Sizes)) > Dims::max_rank)
      return Shaped::fails(Text{"would give more than "} + Dims::max_rank + " dims per sample");
    if (product() != in.sizes[d])
      return Shaped::fails(Text{"splits a dim of size "} + in.sizes[d] + " into sizes whose product is " + product());
    Dims out;
    for (int i = 0; i < d; ++i) out.sizes[out.rank++] = in.sizes[i];
    ((out.sizes[out.rank++] = Sizes), ...);
    for (int i = d + 1; i < in.rank; ++i) out.sizes[out.rank++] = in.sizes[i];
    return Shaped::fits(out);
  }
  constexpr ParamList params(Dims) const { return {}; }
  constexpr Attributes attributes(Dims) const { return Attributes{}; }
  constexpr index_t flops(Dims) const { return 0; }
  std::string repr() const {
    std::string sizes;
    ((sizes += fmt::format("{}, ", Sizes)), ...);
    sizes.resize(sizes.size() - 2);
    if (sizeof...(Sizes) == 1) sizes += ",";
    return fmt::format("Unflatten(dim={}, unflattened_size=({}))", Dim, sizes);
  }
};

// Identity: x, unchanged (torch.nn.Identity). It takes an index in a Sequential, like any layer.
struct Identity {
  static constexpr std::string_view kind = "identity";
  static constexpr Text name() { return "Identity"; }
  static constexpr Shaped infer(Dims in) { return Shaped::fits(in); }
  constexpr ParamList params(Dims) const { return {}; }
  constexpr Attributes attributes(Dims) const { return Attributes{}; }
  constexpr index_t flops(Dims) const { return 0; }
  std::string repr() const { return "Identity()"; }
};

}  // namespace kiln::nn
