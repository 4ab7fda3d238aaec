// The element-wise activations. One functor per formula, shared by the network evaluator and kiln::F.
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/et/eval.hpp>

#include <cmath>

namespace kiln::et {

struct relu_op {
  float operator()(float x) const { return x > 0.0f ? x : 0.0f; }
};
// 1 / (1 + exp(-x)); for x < 0 written as exp(x) / (1 + exp(x)) so that exp never overflows.
struct sigmoid_op {
  float operator()(float x) const {
    if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
  }
};
struct tanh_op {
  float operator()(float x) const { return std::tanh(x); }
};

template <class Layer, class Op>
struct ElementwiseEval {
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward(const Layer&, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext&) {
    const index_t n = samples * in.numel();
    const Op op;
    for (index_t i = 0; i < n; ++i) y[i] = op(x[i]);
  }
};

template <>
struct Eval<nn::ReLU> : ElementwiseEval<nn::ReLU, relu_op> {};
template <>
struct Eval<nn::Sigmoid> : ElementwiseEval<nn::Sigmoid, sigmoid_op> {};
template <>
struct Eval<nn::Tanh> : ElementwiseEval<nn::Tanh, tanh_op> {};

}  // namespace kiln::et
