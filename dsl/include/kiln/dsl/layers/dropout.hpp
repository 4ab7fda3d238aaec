// Dropout{p}: in train mode each element is zeroed with probability p and survivors scaled by 1/(1-p);
// in eval mode the identity (torch.nn.Dropout). The mask comes from Kiln's counter-based RNG (runtime/philox.hpp).
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

#include <stdexcept>
#include <type_traits>

namespace kiln::nn {

namespace detail {
// Not constexpr on purpose: a constant expression that reaches it fails to compile, and the compiler's
// error names this function.
inline void dropout_probability_must_be_between_0_and_1(float) {}
}  // namespace detail

struct Dropout {
  float p = 0.5f;

  constexpr Dropout() = default;
  constexpr Dropout(float probability) : p(probability) {  // NOLINT: Dropout{0.2f} reads as in PyTorch
    if (!(p >= 0.0f && p <= 1.0f)) {
      if (std::is_constant_evaluated()) detail::dropout_probability_must_be_between_0_and_1(p);
      throw std::invalid_argument(fmt::format("Dropout: p must be between 0 and 1, but got {}", p));
    }
  }

  static constexpr std::string_view kind = "dropout";
  static constexpr Text name() { return "Dropout"; }
  static constexpr Shaped infer(Dims in) { return Shaped::fits(in); }
  constexpr ParamList params(Dims) const { return {}; }
  constexpr Attributes attributes(Dims) const { return Attributes{}.add("p", p); }
  constexpr index_t flops(Dims in) const { return in.numel(); }
  std::string repr() const { return fmt::format("Dropout(p={}, inplace=False)", p); }
};

}  // namespace kiln::nn
