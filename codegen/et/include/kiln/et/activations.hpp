// The element-wise activations. One functor per formula, shared by the network evaluator and kiln::F.
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

namespace kiln::et {

// Each functor maps a SIMD vector (vmath.hpp has the formulas); map_vectors runs it over any count.
struct relu_op {
  vfloat operator()(vfloat x) const { return x > 0.0f ? x : 0.0f; }
};
struct sigmoid_op {
  vfloat operator()(vfloat x) const { return vsigmoid(x); }
};
struct tanh_op {
  vfloat operator()(vfloat x) const { return vtanh(x); }
};

template <class Layer, class Op>
struct ElementwiseEval {
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward(const Layer&, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext&) {
    map_vectors(x, y, samples * in.numel(), Op{});
  }
};

template <>
struct Eval<nn::ReLU> : ElementwiseEval<nn::ReLU, relu_op> {};
template <>
struct Eval<nn::Sigmoid> : ElementwiseEval<nn::Sigmoid, sigmoid_op> {};
template <>
struct Eval<nn::Tanh> : ElementwiseEval<nn::Tanh, tanh_op> {};

}  // namespace kiln::et
