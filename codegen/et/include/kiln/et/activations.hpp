// The element-wise activations. One functor per formula, shared by the network evaluator and kiln::F.
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

namespace kiln::et {

// Each functor maps a SIMD vector (vmath.hpp has the formulas); map_vectors runs it over any count.
// derivative(y, dy) is dL/dx from the output y and dL/dy (PyTorch's: ReLU's gradient at 0 is 0).
struct relu_op {
  vfloat operator()(vfloat x) const { return x > 0.0f ? x : 0.0f; }
  static vfloat derivative(vfloat y, vfloat dy) { return y > 0.0f ? dy : 0.0f; }
};
struct sigmoid_op {
  vfloat operator()(vfloat x) const { return vsigmoid(x); }
  static vfloat derivative(vfloat y, vfloat dy) { return dy * y * (1.0f - y); }
};
struct tanh_op {
  vfloat operator()(vfloat x) const { return vtanh(x); }
  static vfloat derivative(vfloat y, vfloat dy) { return dy * (1.0f - y * y); }
};

// dx[i] = Op::derivative(y[i], dy[i]) for i < n.
template <class Op>
inline void elementwise_backward(const float* y, const float* dy, float* dx, index_t n) {
  index_t i = 0;
  for (; i + simd_width <= n; i += simd_width) store(dx + i, Op::derivative(load(y + i), load(dy + i)));
  for (; i < n; ++i) {
    vfloat yv{}, dv{};
    yv[0] = y[i];
    dv[0] = dy[i];
    dx[i] = Op::derivative(yv, dv)[0];
  }
}

template <class Layer, class Op>
struct ElementwiseEval {
  static bool passes_through(const Layer&, bool) { return false; }
  static void forward(const Layer&, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext&) {
    map_vectors(x, y, samples * in.numel(), Op{});
  }
  static void backward(const Layer&, Dims in, const LayerParams&, const LayerGrads&, const float*, const float* y,
                       const float* dy, float* dx, index_t samples, const TileContext&) {
    if (dx) elementwise_backward<Op>(y, dy, dx, samples * in.numel());
  }
};

template <>
struct Eval<nn::ReLU> : ElementwiseEval<nn::ReLU, relu_op> {};
template <>
struct Eval<nn::Sigmoid> : ElementwiseEval<nn::Sigmoid, sigmoid_op> {};
template <>
struct Eval<nn::Tanh> : ElementwiseEval<nn::Tanh, tanh_op> {};

}  // namespace kiln::et
