// Bilinear<In1, In2, Out, Bias>: y_o = x1^T A_o x2 + b_o, ([*, In1], [*, In2]) -> [*, Out] (torch.nn.Bilinear).
// It takes the network's two inputs, so it is the first layer of a Sequential declared with two inputs.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

namespace kiln::nn {

template <index_t In1, index_t In2, index_t Out, bool Bias = true>
struct Bilinear {
  static_assert(In1 > 0 && In2 > 0 && Out > 0, "Bilinear<In1, In2, Out>: all sizes must be positive");
  static constexpr index_t in1_features = In1;
  static constexpr index_t in2_features = In2;
  static constexpr index_t out_features = Out;
  static constexpr bool has_bias = Bias;
  static constexpr bool takes_two_inputs = true;
  static constexpr std::string_view kind = "bilinear";

  static constexpr Text name() {
    return Text{"Bilinear<"} + In1 + ", " + In2 + ", " + Out + (Bias ? ">" : ", false>");
  }
  static constexpr Shaped infer(Dims in) {
    if (in.last() != In1)
      return Shaped::fails(Text{"expects "} + In1 + " features in its first input but receives " + in.last());
    Dims out = in;
    out.sizes[out.rank - 1] = Out;
    return Shaped::fits(out);
  }
  static constexpr Shaped infer_pair(Dims in1, Dims in2) {
    const Shaped first = infer(in1);
    if (!first.ok) return first;
    if (in2.last() != In2)
      return Shaped::fails(Text{"expects "} + In2 + " features in its second input but receives " + in2.last());
    Dims lead1 = in1, lead2 = in2;
    lead1.rank -= 1;
    lead2.rank -= 1;
    if (!(lead1 == lead2))
      return Shaped::fails(Text{"needs inputs with the same leading dims, but receives "} + in1.text() + " and " +
                           in2.text());
    return first;
  }
  constexpr ParamList params(Dims) const {
    const auto bound = static_cast<float>(1.0 / constexpr_sqrt(static_cast<double>(In1)));
    ParamList p;
    p.add({Role::weight, Dims{Out, In1, In2}, Init::uniform, bound});
    if (Bias) p.add({Role::bias, Dims{Out}, Init::uniform, bound});
    return p;
  }
  constexpr Attributes attributes(Dims) const { return Attributes{}.add("out_features", Out); }
  constexpr index_t flops(Dims in) const { return in.numel() / In1 * Out * (2 * In1 * In2 + 2 * In1); }
  std::string repr() const {
    return fmt::format("Bilinear(in1_features={}, in2_features={}, out_features={}, bias={})", In1, In2, Out,
                       Bias ? "True" : "False");
  }
};

}  // namespace kiln::nn
