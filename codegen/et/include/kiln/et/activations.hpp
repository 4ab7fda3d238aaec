// The element-wise activations in the expression-template kernel. Their math is written once, in the layer's
// declaration (dsl/layers/activations.hpp), over a value type V; here V is Vec, one SIMD vector, and a single
// evaluator serves every activation. kiln::F uses the same code.
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/vmath.hpp>

namespace kiln::et {

// One SIMD vector of an activation's math, with the operations dsl/layers/activations.hpp may use.
struct Vec {
  vfloat v;
  Vec(vfloat x) : v(x) {}                 // NOLINT: implicit, so that the math reads as math
  Vec(float x) : v(broadcast(x)) {}       // NOLINT
};
struct VecMask {
  vint m;
};

#if defined(__clang__)
// Fused across operators, as vmath.hpp's vpack (and as g++ does everywhere), so that one vector and a pack round
// an activation's products and sums alike (GELU's tanh form differed in a last bit in 1 value of 850).
#pragma float_control(push)
#pragma clang fp contract(fast)
#endif
inline Vec operator+(Vec a, Vec b) { return a.v + b.v; }
inline Vec operator-(Vec a, Vec b) { return a.v - b.v; }
inline Vec operator*(Vec a, Vec b) { return a.v * b.v; }
inline Vec operator/(Vec a, Vec b) { return a.v / b.v; }
inline Vec operator-(Vec a) { return -a.v; }
inline VecMask operator<(Vec a, Vec b) { return {a.v < b.v}; }
inline VecMask operator>(Vec a, Vec b) { return {a.v > b.v}; }
inline VecMask operator<=(Vec a, Vec b) { return {a.v <= b.v}; }
inline VecMask operator>=(Vec a, Vec b) { return {a.v >= b.v}; }
inline Vec select(VecMask c, Vec a, Vec b) { return c.m ? a.v : b.v; }
inline Vec min(Vec a, Vec b) { return vmin(a.v, b.v); }
inline Vec max(Vec a, Vec b) { return vmax(a.v, b.v); }
inline Vec exp(Vec a) { return vexp(a.v); }
inline Vec expm1(Vec a) { return vexpm1(a.v); }
inline Vec log1p(Vec a) { return vlog1p(a.v); }
inline Vec erf(Vec a) { return verf(a.v); }
inline Vec tanh(Vec a) { return vtanh(a.v); }
inline Vec sigmoid(Vec a) { return vsigmoid(a.v); }
#if defined(__clang__)
#pragma float_control(pop)
#endif

// The same functions on packs of vectors (vmath.hpp's vpack, which has the arithmetic and the comparisons).
template <int K>
inline vpack<K> select(const vmask<K>& c, const vpack<K>& a, const vpack<K>& b) { return vselect(c, a, b); }
template <int K>
inline vpack<K> min(const vpack<K>& a, const vpack<K>& b) { return vmin(a, b); }
template <int K>
inline vpack<K> max(const vpack<K>& a, const vpack<K>& b) { return vmax(a, b); }
template <int K>
inline vpack<K> exp(const vpack<K>& a) { return vexp(a); }
template <int K>
inline vpack<K> expm1(const vpack<K>& a) { return vexpm1(a); }
template <int K>
inline vpack<K> log1p(const vpack<K>& a) { return vlog1p(a); }
template <int K>
inline vpack<K> erf(const vpack<K>& a) { return verf(a); }
template <int K>
inline vpack<K> tanh(const vpack<K>& a) { return vtanh(a); }
template <int K>
inline vpack<K> sigmoid(const vpack<K>& a) { return vsigmoid(a); }

// An activation as a function of one vector, or of a pack of `pack` vectors evaluated side by side (for
// map_vectors, and the Linear tiles' epilogue): four (vmath.hpp's vpack says what it gains; two gained nothing)
// where its math is a chain (exp, erf, a polynomial); none (1) for ReLU and LeakyReLU, a compare and a select, where
// a pack only takes the vectors through memory (linear.hpp's micro-kernel then runs them vector by vector).
template <nn::ActivationLayer Layer>
struct ActivationOp {
  static constexpr int pack = Layer::flops_per_element > 2 ? 4 : 1;
  Layer layer{};
  vfloat operator()(vfloat x) const { return layer.forward(Vec{x}).v; }
  template <int K>
  vpack<K> operator()(vpack<K> x) const { return layer.forward(x); }
};

// dx[i] = layer.backward(x[i], y[i], dy[i]) for i < n; the tail through zero-padded vectors.
template <nn::ActivationLayer Layer>
inline void activation_backward(const Layer& layer, const float* x, const float* y, const float* dy, float* dx,
                                index_t n) {
  index_t i = 0;
  for (; i + simd_width <= n; i += simd_width)
    store(dx + i, layer.backward(Vec{load(x + i)}, Vec{load(y + i)}, Vec{load(dy + i)}).v);
  if (i < n) store_first(dx + i, layer.backward(Vec{load_first(x + i, n - i)}, Vec{load_first(y + i, n - i)},
                                                Vec{load_first(dy + i, n - i)}).v, n - i);
}

template <nn::ActivationLayer Layer>
struct Eval<Layer> {
  static bool passes_through(const Layer&, bool) { return false; }
  static ActivationOp<Layer> epilogue(const Layer& layer) { return {layer}; }
  static void forward(const Layer& layer, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
                      const TileContext&) {
    map_vectors(x, y, samples * in.numel(), ActivationOp<Layer>{layer});
  }
  static void backward(const Layer& layer, Dims in, const LayerParams&, const LayerGrads&, const float* x,
                       const float* y, const float* dy, float* dx, index_t samples, const TileContext&) {
    if (dx) activation_backward(layer, x, y, dy, dx, samples * in.numel());
  }
};

}  // namespace kiln::et
