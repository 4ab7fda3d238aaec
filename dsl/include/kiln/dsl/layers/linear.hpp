// Linear<In, Out, Bias>: y = x W^T + b over the last dim, [*, In] -> [*, Out] (torch.nn.Linear).
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

namespace kiln::nn {

template <index_t In, index_t Out, bool Bias = true>
struct Linear {
  static_assert(In > 0 && Out > 0, "Linear<In, Out>: both sizes must be positive");
  static constexpr index_t in_features = In;
  static constexpr index_t out_features = Out;
  static constexpr bool has_bias = Bias;
  static constexpr std::string_view kind = "linear";

  static constexpr Text name() {
    return Text{"Linear<"} + In + ", " + Out + (Bias ? ">" : ", false>");
  }
  static constexpr Shaped infer(Dims in) {
    if (in.last() != In)
      return Shaped::fails(Text{"expects "} + In + " input features but receives " + in.last());
    Dims out = in;
    out.sizes[out.rank - 1] = Out;
    return Shaped::fits(out);
  }
  constexpr ParamList params(Dims) const {
    // kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(In), 1/sqrt(In)); the bias uses the same bound.
    const auto bound = static_cast<float>(1.0 / constexpr_sqrt(static_cast<double>(In)));
    ParamList p;
    p.add({Role::weight, Dims{Out, In}, Init::uniform, bound});
    if (Bias) p.add({Role::bias, Dims{Out}, Init::uniform, bound});
    return p;
  }
  constexpr Attributes attributes(Dims) const { return Attributes{}.add("out_features", Out); }
  constexpr index_t flops(Dims in) const { return in.numel() / In * Out * (2 * In + (Bias ? 1 : 0)); }
  std::string repr() const {
    return fmt::format("Linear(in_features={}, out_features={}, bias={})", In, Out, Bias ? "True" : "False");
  }
};

// Whether a layer type is a Linear (the backends' special cases: packed weights, the MLIR matmul).
template <class Layer>
inline constexpr bool is_linear = false;
template <index_t In, index_t Out, bool Bias>
inline constexpr bool is_linear<Linear<In, Out, Bias>> = true;

}  // namespace kiln::nn
