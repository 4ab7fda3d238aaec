// The element-wise activations: shape in = shape out, no parameters. Each one is declared here with its math,
// written once for every backend:
//   template <class V> V forward(V x) const;                 // y from x
//   template <class V> V backward(V x, V y, V dy) const;     // dL/dx from x, y and dL/dy, as PyTorch computes it
// V is a backend's value type: a SIMD vector in the expression-template kernel (et/activations.hpp), an MLIR
// value being built in the MLIR backend (codegen/mlir/src/scalar.hpp). Both give it arithmetic with floats,
// comparisons, and the functions select(mask, a, b), min, max, exp, expm1, log1p, erf, tanh and sigmoid,
// found by argument-dependent lookup.
//
// Adding an activation: declare it below (hyperparameters as members with torch's defaults and names, then
// KILN_ACTIVATION(flops per element, a Field per hyperparameter), kind, name, forward, backward, repr)
// and add it to `activations` at the end of this file. Nothing else: every backend reads it from here.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <fmt/format.h>

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace kiln::nn {

// One hyperparameter of an activation: its torch name and where it lives. An activation lists them in
// KILN_ACTIVATION; its attributes (kiln::ir) and its reconstruction from them (the MLIR backend) follow.
template <class Layer, class T>
struct Field {
  std::string_view name;
  T Layer::*member;
};

// What every activation shares: the shape passes through, nothing to learn, its hyperparameters (the Fields
// after the flops per element) as attributes. (A macro rather than a base class: a base would make g++ warn,
// under -Wextra, about every designated initialiser that omits it, as in nn::LeakyReLU{.negative_slope = 0.2f}.)
#define KILN_ACTIVATION(flops_each, ...)                                                                        \
  static constexpr bool is_activation = true;                                                                   \
  static constexpr index_t flops_per_element = (flops_each);                                                    \
  static constexpr auto fields() { return std::tuple{__VA_ARGS__}; }                                            \
  static constexpr Shaped infer(Dims in) { return Shaped::fits(in); }                                           \
  constexpr ParamList params(Dims) const { return {}; }                                                          \
  constexpr index_t flops(Dims in) const { return in.numel() * flops_per_element; }                             \
  constexpr Attributes attributes(Dims) const { return activation_attributes(*this); }

template <class L>
concept ActivationLayer = L::is_activation;


template <class Act>
constexpr Attributes activation_attributes(const Act& act) {
  Attributes a;
  std::apply([&](auto... f) { (a.add(f.name, static_cast<double>(act.*f.member)), ...); }, Act::fields());
  return a;
}

// The activation whose attributes these are (the compiled backends rebuild it from kiln::ir's description).
template <class Act>
constexpr Act activation_from_attributes(const Attributes& a) {
  Act act{};
  auto set = [&]<class T>(T& member, double v) {
    if constexpr (std::is_enum_v<T>) member = static_cast<T>(static_cast<int>(v));
    else member = static_cast<T>(v);
  };
  std::apply([&](auto... f) { (set(act.*f.member, a.find(f.name)->value), ...); }, Act::fields());
  return act;
}

// max(0, x), where max(a, b) is a > b ? a : b in every backend: a NaN stays NaN and -0 stays -0, as in PyTorch.
// The backward passes dy where y <= 0 is false, as PyTorch's threshold_backward (so also at a NaN).
struct ReLU {
  static constexpr std::string_view kind = "relu";
  KILN_ACTIVATION(1)
  static constexpr Text name() { return "ReLU"; }
  std::string repr() const { return "ReLU()"; }
  template <class V>
  V forward(V x) const { return max(V(0.0f), x); }
  template <class V>
  V backward(V x, V, V dy) const { return select(x <= 0.0f, V(0.0f), dy); }
};

// 1 / (1 + exp(-x)), evaluated without overflow for large |x|
struct Sigmoid {
  static constexpr std::string_view kind = "sigmoid";
  KILN_ACTIVATION(4)
  static constexpr Text name() { return "Sigmoid"; }
  std::string repr() const { return "Sigmoid()"; }
  template <class V>
  V forward(V x) const { return sigmoid(x); }
  template <class V>
  V backward(V, V y, V dy) const { return dy * y * (1.0f - y); }
};

// tanh(x)
struct Tanh {
  static constexpr std::string_view kind = "tanh";
  KILN_ACTIVATION(4)
  static constexpr Text name() { return "Tanh"; }
  std::string repr() const { return "Tanh()"; }
  template <class V>
  V forward(V x) const { return tanh(x); }
  template <class V>
  V backward(V, V y, V dy) const { return dy * (1.0f - y * y); }
};

enum class GELUApproximate { none, tanh };

// x * 0.5 * (1 + erf(x / sqrt(2))); approximate = tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
struct GELU {
  GELUApproximate approximate = GELUApproximate::none;

  static constexpr std::string_view kind = "gelu";
  KILN_ACTIVATION(8, Field{"approximate", &GELU::approximate})
  static constexpr Text name() { return "GELU"; }
  static constexpr float sqrt_half = 0.70710678118654752f, sqrt_2_over_pi = 0.79788456080286536f,
                         inv_sqrt_2pi = 0.39894228040143268f, cubic = 0.044715f;
  template <class V>
  V forward(V x) const {
    if (approximate == GELUApproximate::tanh) return 0.5f * x * (1.0f + tanh(sqrt_2_over_pi * (x + cubic * x * x * x)));
    return 0.5f * x * (1.0f + erf(x * sqrt_half));
  }
  template <class V>
  V backward(V x, V, V dy) const {
    if (approximate == GELUApproximate::tanh) {
      const V t = tanh(sqrt_2_over_pi * (x + cubic * x * x * x));
      const V inner = sqrt_2_over_pi * (1.0f + 3.0f * cubic * x * x);
      return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * inner);
    }
    return dy * (0.5f * (1.0f + erf(x * sqrt_half)) + x * inv_sqrt_2pi * exp(-0.5f * x * x));
  }
  std::string repr() const {
    return fmt::format("GELU(approximate='{}')", approximate == GELUApproximate::tanh ? "tanh" : "none");
  }
};

// x * sigmoid(x)
struct SiLU {
  static constexpr std::string_view kind = "silu";
  KILN_ACTIVATION(5)
  static constexpr Text name() { return "SiLU"; }
  std::string repr() const { return "SiLU()"; }
  template <class V>
  V forward(V x) const { return x * sigmoid(x); }
  template <class V>
  V backward(V x, V, V dy) const {
    const V s = sigmoid(x);
    return dy * s * (1.0f + x * (1.0f - s));
  }
};

// x > 0 ? x : negative_slope * x
struct LeakyReLU {
  float negative_slope = 0.01f;

  static constexpr std::string_view kind = "leaky_relu";
  KILN_ACTIVATION(2, Field{"negative_slope", &LeakyReLU::negative_slope})
  static constexpr Text name() { return "LeakyReLU"; }
  template <class V>
  V forward(V x) const { return select(x > 0.0f, x, x * negative_slope); }
  template <class V>
  V backward(V x, V, V dy) const { return select(x > 0.0f, dy, dy * negative_slope); }
  std::string repr() const { return fmt::format("LeakyReLU(negative_slope={})", negative_slope); }
};

// x > 0 ? x : alpha * (exp(x) - 1); a NaN takes the exp branch in both directions, as in PyTorch's kernels
struct ELU {
  float alpha = 1.0f;

  static constexpr std::string_view kind = "elu";
  KILN_ACTIVATION(4, Field{"alpha", &ELU::alpha})
  static constexpr Text name() { return "ELU"; }
  template <class V>
  V forward(V x) const { return select(x > 0.0f, x, alpha * expm1(x)); }
  template <class V>
  V backward(V x, V, V dy) const { return select(x > 0.0f, dy, dy * (alpha * exp(x))); }
  std::string repr() const { return fmt::format("ELU(alpha={})", alpha); }
};

// log(1 + exp(beta x)) / beta, and x where beta x > threshold
struct Softplus {
  float beta = 1.0f;
  float threshold = 20.0f;

  static constexpr std::string_view kind = "softplus";
  KILN_ACTIVATION(5, Field{"beta", &Softplus::beta}, Field{"threshold", &Softplus::threshold})
  static constexpr Text name() { return "Softplus"; }
  template <class V>
  V forward(V x) const { return select(x * beta > threshold, x, log1p(exp(x * beta)) / beta); }
  template <class V>
  V backward(V x, V, V dy) const {
    const V z = exp(x * beta);
    return select(x * beta > threshold, dy, dy * z / (z + 1.0f));
  }
  std::string repr() const { return fmt::format("Softplus(beta={}, threshold={})", beta, threshold); }
};

// x * relu6(x + 3) / 6
struct Hardswish {
  static constexpr std::string_view kind = "hardswish";
  KILN_ACTIVATION(4)
  static constexpr Text name() { return "Hardswish"; }
  std::string repr() const { return "Hardswish()"; }
  template <class V>
  V forward(V x) const { return x * min(max(x + 3.0f, V(0.0f)), V(6.0f)) / 6.0f; }
  // In the order of PyTorch's vectorised kernel: dy at x = 3 exactly (its scalar tail gives 1.5 dy), NaN at NaN.
  template <class V>
  V backward(V x, V, V dy) const {
    return select(x < -3.0f, V(0.0f), select(x >= 3.0f, dy, dy * (x / 3.0f + 0.5f)));
  }
};

// Every activation: the backends that are not templated per network (MLIR) dispatch on this list.
using activations = std::tuple<ReLU, Sigmoid, Tanh, GELU, SiLU, LeakyReLU, ELU, Softplus, Hardswish>;

}  // namespace kiln::nn
