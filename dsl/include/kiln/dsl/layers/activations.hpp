// The element-wise activations: ReLU, Sigmoid, Tanh. Shape in = shape out, no parameters.
// Their formulas live in codegen/et/include/kiln/et/activations.hpp.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <string>

namespace kiln::nn {

// Shared by the element-wise layers: the shape passes through, nothing to learn.
template <class Derived>
struct Elementwise {
  static constexpr Shaped infer(Dims in) { return Shaped::fits(in); }
  constexpr ParamList params(Dims) const { return {}; }
  constexpr index_t flops(Dims in) const { return in.numel() * Derived::flops_per_element; }
  std::string repr() const { return std::string{Derived::name().view()} + "()"; }
};

// max(0, x)
struct ReLU : Elementwise<ReLU> {
  static constexpr index_t flops_per_element = 1;
  static constexpr Text name() { return "ReLU"; }
};

// 1 / (1 + exp(-x)), evaluated without overflow for large |x|
struct Sigmoid : Elementwise<Sigmoid> {
  static constexpr index_t flops_per_element = 4;
  static constexpr Text name() { return "Sigmoid"; }
};

// tanh(x)
struct Tanh : Elementwise<Tanh> {
  static constexpr index_t flops_per_element = 4;
  static constexpr Text name() { return "Tanh"; }
};

}  // namespace kiln::nn
