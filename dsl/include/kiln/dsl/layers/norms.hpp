// LayerNorm<Sizes...> and RMSNorm<Sizes...>: normalise over the last sizeof...(Sizes) dims, which must
// equal Sizes (torch.nn.LayerNorm, torch.nn.RMSNorm).
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

#include <optional>

namespace kiln::nn {

namespace detail {
template <index_t... Sizes>
constexpr Text sizes_text() {
  Text t;
  ((t += Text{t.empty() ? "" : ", "} + Sizes), ...);
  return t;
}
template <index_t... Sizes>
constexpr Dims dims_of() { return Dims{Sizes...}; }

// The normalised shape must be a suffix of the input's per-sample shape.
template <index_t... Sizes>
constexpr Shaped check_suffix(Dims in) {
  constexpr Dims shape{Sizes...};
  bool fits = in.rank >= shape.rank;
  for (int i = 0; fits && i < shape.rank; ++i) fits = in.sizes[in.rank - shape.rank + i] == shape.sizes[i];
  if (!fits)
    return Shaped::fails(Text{"normalises over the last dims ["} + sizes_text<Sizes...>() + "] but receives " +
                         in.text());
  return Shaped::fits(in);
}
template <index_t... Sizes>
std::string shape_repr() {
  std::string s;
  ((s += fmt::format("{}, ", Sizes)), ...);
  s.resize(s.size() - 2);
  return "(" + s + (sizeof...(Sizes) == 1 ? ",)" : ")");
}
}  // namespace detail

// (x - mean) / sqrt(var_biased + eps) * weight + bias
template <index_t... Sizes>
struct LayerNorm {
  static_assert(sizeof...(Sizes) > 0 && ((Sizes > 0) && ...), "LayerNorm<Sizes...>: give the positive sizes of the normalised dims");
  static constexpr Dims normalized_shape{Sizes...};

  float eps = 1e-5f;
  bool elementwise_affine = true;
  bool bias = true;

  static constexpr std::string_view kind = "layer_norm";
  static constexpr Text name() { return Text{"LayerNorm<"} + detail::sizes_text<Sizes...>() + ">"; }
  static constexpr Shaped infer(Dims in) { return detail::check_suffix<Sizes...>(in); }
  constexpr ParamList params(Dims) const {
    ParamList p;
    if (elementwise_affine) {
      p.add({Role::weight, normalized_shape, Init::ones});
      if (bias) p.add({Role::bias, normalized_shape, Init::zeros});
    }
    return p;
  }
  constexpr Attributes attributes(Dims) const {
    return Attributes{}.add("eps", eps).add("elementwise_affine", elementwise_affine).add("bias", bias).add(
        "norm_size", normalized_shape.numel());
  }
  constexpr index_t flops(Dims in) const { return in.numel() * 8; }
  std::string repr() const {
    return fmt::format("LayerNorm({}, eps={}, elementwise_affine={}{})", detail::shape_repr<Sizes...>(), eps,
                       elementwise_affine ? "True" : "False", elementwise_affine && !bias ? ", bias=False" : "");
  }
  // to_pytorch: bias=False needs torch>=2.1, or kiln_nn.LayerNorm.
  constexpr std::string_view torch_module() const { return elementwise_affine && !bias ? "kiln_nn" : "nn"; }
};

// Where RMSNorm adds eps. torch.nn.RMSNorm (the default): x / sqrt(mean(x^2) + eps). The seed tutorial's
// hand-written RMSNorm: x / (sqrt(mean(x^2)) + eps), eps added to the RMS itself.
enum class RMSNormEps { inside_sqrt, added_to_rms };

// x / sqrt(mean(x^2) + eps) * weight; eps = std::nullopt means FLT_EPSILON, as PyTorch's None does.
template <index_t... Sizes>
struct RMSNorm {
  static_assert(sizeof...(Sizes) > 0 && ((Sizes > 0) && ...), "RMSNorm<Sizes...>: give the positive sizes of the normalised dims");
  static constexpr Dims normalized_shape{Sizes...};

  std::optional<float> eps = std::nullopt;
  bool elementwise_affine = true;
  RMSNormEps eps_placement = RMSNormEps::inside_sqrt;

  constexpr float eps_value() const { return eps ? *eps : 1.1920928955078125e-07f; }

  static constexpr std::string_view kind = "rms_norm";
  static constexpr Text name() { return Text{"RMSNorm<"} + detail::sizes_text<Sizes...>() + ">"; }
  static constexpr Shaped infer(Dims in) { return detail::check_suffix<Sizes...>(in); }
  constexpr ParamList params(Dims) const {
    ParamList p;
    if (elementwise_affine) p.add({Role::weight, normalized_shape, Init::ones});
    return p;
  }
  constexpr Attributes attributes(Dims) const {
    return Attributes{}
        .add("eps", eps_value())
        .add("elementwise_affine", elementwise_affine)
        .add("eps_added_to_rms", eps_placement == RMSNormEps::added_to_rms)
        .add("norm_size", normalized_shape.numel());
  }
  constexpr index_t flops(Dims in) const { return in.numel() * 4; }
  std::string repr() const {
    return fmt::format("RMSNorm({}, eps={}, elementwise_affine={}{})", detail::shape_repr<Sizes...>(),
                       eps ? fmt::format("{}", *eps) : "None", elementwise_affine ? "True" : "False",
                       eps_placement == RMSNormEps::added_to_rms ? ", eps_placement='added_to_rms'" : "");
  }
  // to_pytorch: torch.nn has RMSNorm from 2.4 on, and never the eps added to the RMS.
  static constexpr std::string_view torch_module() { return "kiln_nn"; }
};

}  // namespace kiln::nn
