// kiln::F: torch.nn.functional's names and defaults, as expression templates over tensors.
//
//   kiln::Tensor y = F::relu(F::linear(x, w, b));   // one loop over tiles of rows, no temporary tensor
//
// Each F:: call returns an expression node that only stores its operands (node); the evaluation (evaluator)
// walks tiles of rows of the result, asking each node to write its rows; element-wise nodes apply their
// functor (functor, shared with the network evaluators) in place on the rows their child wrote. Nodes that
// need the whole batch first (softmax over dim 0, batch_norm with batch statistics, a flatten that merges
// the batch dim) evaluate their child once in prepare(). Shapes are dynamic here: a mismatch throws
// kiln::Error naming the function, what it expected and what it got.
#pragma once

#include <kiln/et/evaluators.hpp>
#include <kiln/runtime/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace kiln {

// The random state of kiln::F::dropout (torch's default generator): a seed, and a count of calls so that
// every call draws a fresh mask. kiln::manual_seed(s) resets it.
struct Generator {
  std::uint64_t seed = 0;
  std::uint32_t calls = 0;
};
inline Generator& default_generator() {
  static Generator g;
  return g;
}
inline void manual_seed(std::uint64_t seed) { default_generator() = {seed, 0}; }

namespace F {

namespace detail {

struct ExpressionBase {};

template <class E>
inline constexpr bool is_expression = std::is_base_of_v<ExpressionBase, E>;

inline index_t row_size(const Shape& s) { return s.empty() || s[0] == 0 ? 0 : numel_of(s) / s[0]; }

[[noreturn]] inline void fail(const std::string& what) { throw Error("F::" + what); }

// Scratch rows for a node's child, per thread and per nesting depth so that nested nodes do not clash.
inline float* scratch(int depth, std::size_t floats) {
  thread_local std::vector<et::float_buffer> buffers;
  if (buffers.size() <= static_cast<std::size_t>(depth)) buffers.resize(static_cast<std::size_t>(depth) + 1);
  auto& b = buffers[static_cast<std::size_t>(depth)];
  if (b.size() < floats) b.resize(floats);
  return b.data();
}

// Every node: Shape shape(); void prepare(); int depth(); void rows(index_t r0, index_t n, float* out)
// (writes rows [r0, r0 + n) of its result, row-major); const float* direct() (its data when it is a tensor).
template <class Derived>
struct Expression : ExpressionBase {
  const float* direct() const { return nullptr; }
  // Evaluates into a new tensor, tile by tile.
  Tensor eval() const {
    const Derived& self = static_cast<const Derived&>(*this);
    self.prepare();
    Tensor out(self.shape());
    const index_t n = out.dim() == 0 ? 1 : out.size(0), width = std::max<index_t>(row_size(out.shape()), 1);
    const index_t tile = std::clamp<index_t>(16384 / width, 1, 256);
    for (index_t r0 = 0; r0 < n; r0 += tile) self.rows(r0, std::min(tile, n - r0), out.data() + r0 * width);
    return out;
  }
  operator Tensor() const { return eval(); }  // NOLINT: Tensor y = F::relu(x) evaluates
};

// A tensor operand (shares its storage).
struct Leaf : Expression<Leaf> {
  Tensor t;
  explicit Leaf(Tensor x) : t(std::move(x)) {
    if (t.dtype() != DType::float32) fail("input: expected a float32 tensor, got " + std::string{dtype_name(t.dtype())});
  }
  Shape shape() const { return t.shape(); }
  void prepare() const {}
  int depth() const { return 0; }
  const float* direct() const { return t.data(); }
  void rows(index_t r0, index_t n, float* out) const {
    const index_t w = row_size(t.shape());
    std::copy(t.data() + r0 * w, t.data() + (r0 + n) * w, out);
  }
};

template <class X>
auto operand(const X& x) {
  if constexpr (is_expression<X>) return x;
  else return Leaf(Tensor(x));
}
template <class X>
using operand_t = decltype(operand(std::declval<X>()));

// Rows [r0, r0 + n) of a child, without a copy when it is a tensor.
template <class E>
const float* child_rows(const E& e, index_t r0, index_t n, int depth) {
  const index_t w = row_size(e.shape());
  if (const float* d = e.direct()) return d + r0 * w;
  float* buf = scratch(depth, static_cast<std::size_t>(n * w));
  e.rows(r0, n, buf);
  return buf;
}

// The whole result of a child, as a tensor (for nodes that need the whole batch).
template <class E>
Tensor materialise(const E& e) {
  if constexpr (std::is_same_v<E, Leaf>) return e.t;
  else return e.eval();
}

// An activation (an nn layer: its math is the network evaluator's) applied to every element.
template <nn::ActivationLayer Act, class E>
struct ActivationNode : Expression<ActivationNode<Act, E>> {
  E x;
  Act act;
  ActivationNode(E e, Act a) : x(std::move(e)), act(a) {}
  Shape shape() const { return x.shape(); }
  void prepare() const { x.prepare(); }
  int depth() const { return x.depth(); }
  void rows(index_t r0, index_t n, float* out) const {
    x.rows(r0, n, out);  // the child writes into our rows; the activation then runs in place
    et::map_vectors(out, out, n * row_size(shape()), et::ActivationOp<Act>{act});
  }
};

template <class E>
struct LinearNode : Expression<LinearNode<E>> {
  E x;
  Tensor weight, bias;
  // The packed weight, made with every call: a plain vector 15 floats longer, read from its first 64-byte boundary
  // (aligned_packed). An et::float_buffer, allocated aligned, made glibc grow and trim its heap on every call of
  // F::linear(x [256, 512], W [512, 512]) on the Intel Xeon (423 brk calls in place of 23; 1170 against 850 us).
  mutable std::vector<float> packed;
  LinearNode(E e, Tensor w, Tensor b) : x(std::move(e)), weight(std::move(w)), bias(std::move(b)) {
    const Shape s = x.shape();
    if (weight.dim() != 2) fail("linear: weight must be [out, in], got " + shape_text(weight.shape()));
    if (s.empty() || s.back() != weight.size(1))
      fail(fmt::format("linear: input {} has {} features in its last dim but weight {} expects {}", shape_text(s),
                       s.empty() ? 0 : s.back(), shape_text(weight.shape()), weight.size(1)));
    if (bias.defined() && bias.shape() != Shape{weight.size(0)})
      fail(fmt::format("linear: bias must be [{}], got {}", weight.size(0), shape_text(bias.shape())));
  }
  Shape shape() const {
    Shape s = x.shape();
    s.back() = weight.size(0);
    return s;
  }
  void prepare() const {
    x.prepare();
    packed.resize(static_cast<std::size_t>(et::linear_packed_size(weight.size(1), weight.size(0))) + 15);
    et::pack_linear_weight(weight.data(), weight.size(1), weight.size(0), aligned_packed());
  }
  float* aligned_packed() const {
    const auto at = reinterpret_cast<std::uintptr_t>(packed.data());
    return packed.data() + (64 - at % 64) % 64 / sizeof(float);
  }
  int depth() const { return x.depth() + 1; }
  void rows(index_t r0, index_t n, float* out) const {
    const float* in = child_rows(x, r0, n, depth());
    const index_t inner = row_size(x.shape()) / weight.size(1);
    et::linear_forward(in, n * inner, weight.size(1), weight.size(0), aligned_packed(),
                       bias.defined() ? bias.data() : nullptr, out);
  }
};

template <class E1, class E2>
struct BilinearNode : Expression<BilinearNode<E1, E2>> {
  E1 x1;
  E2 x2;
  Tensor weight, bias;
  BilinearNode(E1 a, E2 b, Tensor w, Tensor bb) : x1(std::move(a)), x2(std::move(b)), weight(std::move(w)), bias(std::move(bb)) {
    const Shape s1 = x1.shape(), s2 = x2.shape();
    if (weight.dim() != 3) fail("bilinear: weight must be [out, in1, in2], got " + shape_text(weight.shape()));
    if (s1.empty() || s1.back() != weight.size(1) || s2.empty() || s2.back() != weight.size(2) ||
        !std::equal(s1.begin(), s1.end() - 1, s2.begin(), s2.end() - 1))
      fail(fmt::format("bilinear: inputs {} and {} do not fit weight {} (expected [*, {}] and [*, {}])", shape_text(s1),
                       shape_text(s2), shape_text(weight.shape()), weight.size(1), weight.size(2)));
    if (bias.defined() && bias.shape() != Shape{weight.size(0)})
      fail(fmt::format("bilinear: bias must be [{}], got {}", weight.size(0), shape_text(bias.shape())));
  }
  Shape shape() const {
    Shape s = x1.shape();
    s.back() = weight.size(0);
    return s;
  }
  void prepare() const {
    x1.prepare();
    x2.prepare();
  }
  int depth() const { return std::max(x1.depth(), x2.depth()) + 2; }
  void rows(index_t r0, index_t n, float* out) const {
    const float* a = child_rows(x1, r0, n, depth() - 1);
    const float* b = child_rows(x2, r0, n, depth());
    const index_t inner = row_size(x1.shape()) / weight.size(1);
    et::bilinear_forward_reference(a, b, n * inner, weight.size(1), weight.size(2), weight.size(0), weight.data(),
                         bias.defined() ? bias.data() : nullptr, out);
  }
};

// softmax, or log_softmax when `log`.
template <class E>
struct SoftmaxNode : Expression<SoftmaxNode<E>> {
  E x;
  int dim;
  bool log;
  mutable Tensor whole;  // dim 0: the softmax over the batch, computed in prepare()
  SoftmaxNode(E e, int d, bool log_) : x(std::move(e)), log(log_) {
    const int rank = static_cast<int>(x.shape().size());
    dim = d < 0 ? d + rank : d;
    if (dim < 0 || dim >= rank) fail(fmt::format("{}: dim {} is out of range for an input {}", log ? "log_softmax" : "softmax", d, shape_text(x.shape())));
  }
  Shape shape() const { return x.shape(); }
  int depth() const { return x.depth(); }
  void prepare() const {
    x.prepare();
    if (dim != 0) return;
    const Tensor in = materialise(x);
    whole = Tensor(in.shape());
    (log ? et::log_softmax_forward : et::softmax_forward)(in.data(), whole.data(), 1, in.size(0), row_size(in.shape()));
  }
  void rows(index_t r0, index_t n, float* out) const {
    const Shape s = shape();
    const index_t w = row_size(s);
    if (dim == 0) {
      std::copy(whole.data() + r0 * w, whole.data() + (r0 + n) * w, out);
      return;
    }
    x.rows(r0, n, out);
    index_t outer = 1, inner = 1;
    for (int i = 1; i < dim; ++i) outer *= s[static_cast<std::size_t>(i)];
    for (std::size_t i = static_cast<std::size_t>(dim) + 1; i < s.size(); ++i) inner *= s[i];
    (log ? et::log_softmax_forward : et::softmax_forward)(out, out, n * outer, s[static_cast<std::size_t>(dim)], inner);
  }
};

inline index_t normalized_size(const char* fn, const Shape& s, const Shape& normalized) {
  const bool suffix = normalized.size() <= s.size() && std::equal(normalized.begin(), normalized.end(), s.end() - static_cast<std::ptrdiff_t>(normalized.size()));
  if (!suffix || normalized.empty())
    fail(fmt::format("{}: normalized_shape {} is not a suffix of the input shape {}", fn, shape_text(normalized), shape_text(s)));
  return numel_of(normalized);
}
inline void check_param(const char* fn, const char* name, const Tensor& t, const Shape& expected) {
  if (t.defined() && t.shape() != expected)
    fail(fmt::format("{}: {} must be {}, got {}", fn, name, shape_text(expected), shape_text(t.shape())));
}

template <class E>
struct LayerNormNode : Expression<LayerNormNode<E>> {
  E x;
  index_t size;
  Tensor weight, bias;
  float eps;
  LayerNormNode(E e, const Shape& normalized, Tensor w, Tensor b, float eps_)
      : x(std::move(e)), size(normalized_size("layer_norm", x.shape(), normalized)), weight(std::move(w)), bias(std::move(b)), eps(eps_) {
    check_param("layer_norm", "weight", weight, normalized);
    check_param("layer_norm", "bias", bias, normalized);
  }
  Shape shape() const { return x.shape(); }
  void prepare() const { x.prepare(); }
  int depth() const { return x.depth(); }
  void rows(index_t r0, index_t n, float* out) const {
    x.rows(r0, n, out);
    et::layer_norm_forward(out, out, n * row_size(shape()) / size, size, eps, weight.defined() ? weight.data() : nullptr,
                           bias.defined() ? bias.data() : nullptr);
  }
};

template <class E>
struct RMSNormNode : Expression<RMSNormNode<E>> {
  E x;
  index_t size;
  Tensor weight;
  float eps;
  RMSNormNode(E e, const Shape& normalized, Tensor w, float eps_)
      : x(std::move(e)), size(normalized_size("rms_norm", x.shape(), normalized)), weight(std::move(w)), eps(eps_) {
    check_param("rms_norm", "weight", weight, normalized);
  }
  Shape shape() const { return x.shape(); }
  void prepare() const { x.prepare(); }
  int depth() const { return x.depth(); }
  void rows(index_t r0, index_t n, float* out) const {
    x.rows(r0, n, out);
    et::rms_norm_forward(out, out, n * row_size(shape()) / size, size, eps, false, weight.defined() ? weight.data() : nullptr);
  }
};

template <class E>
struct BatchNormNode : Expression<BatchNormNode<E>> {
  E x;
  Tensor running_mean, running_var, weight, bias;
  bool training;
  float momentum, eps;
  mutable std::vector<float> scale, shift;
  BatchNormNode(E e, Tensor rm, Tensor rv, Tensor w, Tensor b, bool train, float m, float eps_)
      : x(std::move(e)), running_mean(std::move(rm)), running_var(std::move(rv)), weight(std::move(w)), bias(std::move(b)),
        training(train), momentum(m), eps(eps_) {
    const Shape s = x.shape();
    if (s.size() != 2 && s.size() != 3) fail("batch_norm: expected an input [N, C] or [N, C, L], got " + shape_text(s));
    const Shape c{s[1]};
    check_param("batch_norm", "running_mean", running_mean, c);
    check_param("batch_norm", "running_var", running_var, c);
    check_param("batch_norm", "weight", weight, c);
    check_param("batch_norm", "bias", bias, c);
    if (!training && (!running_mean.defined() || !running_var.defined()))
      fail("batch_norm: eval mode (training=false) needs running_mean and running_var");
  }
  Shape shape() const { return x.shape(); }
  int depth() const { return x.depth(); }
  void prepare() const {
    x.prepare();
    const Shape s = shape();
    const index_t c = s[1], length = s.size() == 3 ? s[2] : 1;
    std::vector<double> mean(static_cast<std::size_t>(c)), var(static_cast<std::size_t>(c));
    if (training) {
      if (s[0] * length <= 1)
        fail(fmt::format("batch_norm: expected more than 1 value per channel when training, got input of size {}", shape_text(s)));
      const Tensor in = materialise(x);
      et::batchnorm_batch_stats(in.data(), s[0], c, length, mean.data(), var.data());
      if (running_mean.defined() && running_var.defined()) {
        const double unbias = static_cast<double>(s[0] * length) / static_cast<double>(s[0] * length - 1);
        Tensor rm = running_mean, rv = running_var;  // shares storage: updates the caller's tensors
        for (index_t i = 0; i < c; ++i) {
          rm[i] = static_cast<float>((1 - momentum) * rm[i] + momentum * mean[static_cast<std::size_t>(i)]);
          rv[i] = static_cast<float>((1 - momentum) * rv[i] + momentum * var[static_cast<std::size_t>(i)] * unbias);
        }
      }
    } else {
      for (index_t i = 0; i < c; ++i) {
        mean[static_cast<std::size_t>(i)] = running_mean[i];
        var[static_cast<std::size_t>(i)] = running_var[i];
      }
    }
    scale.resize(static_cast<std::size_t>(c));
    shift.resize(static_cast<std::size_t>(c));
    et::batchnorm_scale_shift(c, mean.data(), var.data(), eps, weight.defined() ? weight.data() : nullptr,
                              bias.defined() ? bias.data() : nullptr, scale.data(), shift.data());
  }
  void rows(index_t r0, index_t n, float* out) const {
    x.rows(r0, n, out);
    const Shape s = shape();
    const index_t c = s[1], length = s.size() == 3 ? s[2] : 1;
    for (index_t r = 0; r < n; ++r)
      for (index_t ch = 0; ch < c; ++ch)
        for (index_t l = 0; l < length; ++l) {
          float& v = out[(r * c + ch) * length + l];
          v = v * scale[static_cast<std::size_t>(ch)] + shift[static_cast<std::size_t>(ch)];
        }
  }
};

template <class E>
struct DropoutNode : Expression<DropoutNode<E>> {
  E x;
  float p;
  bool training;
  DropoutStream rng;
  DropoutNode(E e, float p_, bool train, Generator& g)
      : x(std::move(e)), p(p_), training(train), rng(g.seed, 0, g.calls) {
    if (!(p >= 0.0f && p <= 1.0f)) fail(fmt::format("dropout: p must be between 0 and 1, but got {}", p));
    if (training) ++g.calls;
  }
  Shape shape() const { return x.shape(); }
  void prepare() const { x.prepare(); }
  int depth() const { return x.depth(); }
  void rows(index_t r0, index_t n, float* out) const {
    x.rows(r0, n, out);
    if (!training || p == 0.0f) return;
    const index_t w = row_size(shape());
    et::dropout_forward(out, out, n * w, static_cast<std::uint64_t>(r0 * w), p, rng);
  }
};

// flatten / unflatten: the data does not move. When the first dim changes, the child is evaluated whole.
template <class E>
struct ReshapeNode : Expression<ReshapeNode<E>> {
  E x;
  Shape to;
  mutable Tensor whole;
  ReshapeNode(E e, Shape s) : x(std::move(e)), to(std::move(s)) {}
  bool same_rows() const { return !to.empty() && !x.shape().empty() && to[0] == x.shape()[0]; }
  Shape shape() const { return to; }
  int depth() const { return x.depth(); }
  void prepare() const {
    x.prepare();
    if (!same_rows()) whole = materialise(x);
  }
  const float* direct() const {
    if (same_rows()) return x.direct();
    return nullptr;
  }
  void rows(index_t r0, index_t n, float* out) const {
    if (same_rows()) return x.rows(r0, n, out);
    const index_t w = row_size(to);
    std::copy(whole.data() + r0 * w, whole.data() + (r0 + n) * w, out);
  }
};

// a + b, of one shape (torch.add): the skip connection of a residual block, written as F.
template <class E1, class E2>
struct AddNode : Expression<AddNode<E1, E2>> {
  E1 a;
  E2 b;
  AddNode(E1 x, E2 y) : a(std::move(x)), b(std::move(y)) {
    if (a.shape() != b.shape()) fail(fmt::format("add: shapes {} and {} differ", shape_text(a.shape()), shape_text(b.shape())));
  }
  Shape shape() const { return a.shape(); }
  void prepare() const {
    a.prepare();
    b.prepare();
  }
  int depth() const { return std::max(a.depth(), b.depth()) + 1; }
  void rows(index_t r0, index_t n, float* out) const {
    a.rows(r0, n, out);
    const float* y = child_rows(b, r0, n, depth());
    for (index_t i = 0; i < n * row_size(shape()); ++i) out[i] += y[i];
  }
};

// torch.cat([a, b], dim) along a per-sample dim: shapes agree on every other dim.
template <class E1, class E2>
struct CatNode : Expression<CatNode<E1, E2>> {
  E1 a;
  E2 b;
  int dim = 0;  // the full-shape dim, >= 1
  CatNode(E1 x, E2 y, int d) : a(std::move(x)), b(std::move(y)) {
    const Shape sa = a.shape(), sb = b.shape();
    const int rank = static_cast<int>(sa.size());
    dim = d < 0 ? d + rank : d;
    if (dim < 1 || dim >= rank)
      fail(fmt::format("cat: dim {} is out of range or the batch dim for an input {}", d, shape_text(sa)));
    bool agree = sb.size() == sa.size();
    for (int i = 0; agree && i < rank; ++i) agree = i == dim || sa[static_cast<std::size_t>(i)] == sb[static_cast<std::size_t>(i)];
    if (!agree) fail(fmt::format("cat: {} and {} differ off dim {}", shape_text(sa), shape_text(sb), d));
  }
  Shape shape() const {
    Shape s = a.shape();
    s[static_cast<std::size_t>(dim)] += b.shape()[static_cast<std::size_t>(dim)];
    return s;
  }
  void prepare() const {
    a.prepare();
    b.prepare();
  }
  int depth() const { return std::max(a.depth(), b.depth()) + 2; }
  void rows(index_t r0, index_t n, float* out) const {
    const float* x = child_rows(a, r0, n, depth() - 1);
    const float* y = child_rows(b, r0, n, depth());
    index_t outer = 1;
    for (int i = 1; i < dim; ++i) outer *= a.shape()[static_cast<std::size_t>(i)];
    const index_t pa = row_size(a.shape()) / outer, pb = row_size(b.shape()) / outer;
    for (index_t r = 0; r < n * outer; ++r) {
      std::copy(x + r * pa, x + (r + 1) * pa, out);
      std::copy(y + r * pb, y + (r + 1) * pb, out + pa);
      out += pa + pb;
    }
  }
};

}  // namespace detail

// y = x W^T + b over the last dim (torch.nn.functional.linear). An undefined bias (Tensor{}) means none.
template <class X>
auto linear(const X& x, const Tensor& weight, const Tensor& bias = {}) {
  return detail::LinearNode<detail::operand_t<X>>(detail::operand(x), weight, bias);
}
// y_o = x1^T A_o x2 + b_o (torch.nn.functional.bilinear).
template <class X1, class X2>
auto bilinear(const X1& x1, const X2& x2, const Tensor& weight, const Tensor& bias = {}) {
  return detail::BilinearNode<detail::operand_t<X1>, detail::operand_t<X2>>(detail::operand(x1), detail::operand(x2),
                                                                            weight, bias);
}
// a + b (torch.add), e.g. a residual block: F::add(x, F::linear(F::relu(F::linear(x, w1, b1)), w2, b2)).
template <class X1, class X2>
auto add(const X1& a, const X2& b) {
  return detail::AddNode<detail::operand_t<X1>, detail::operand_t<X2>>(detail::operand(a), detail::operand(b));
}
// torch.cat([a, b], dim) along a per-sample dim (dim counts the batch dim; negative from the end).
template <class X1, class X2>
auto cat(const X1& a, const X2& b, int dim = -1) {
  return detail::CatNode<detail::operand_t<X1>, detail::operand_t<X2>>(detail::operand(a), detail::operand(b), dim);
}
// Any activation layer of kiln::nn on every element: F::activation(nn::ELU{.alpha = 0.5f}, x).
template <nn::ActivationLayer Act, class X>
auto activation(const Act& act, const X& x) {
  return detail::ActivationNode<Act, detail::operand_t<X>>(detail::operand(x), act);
}
// torch.nn.functional's names and defaults for them.
template <class X>
auto relu(const X& x) { return activation(nn::ReLU{}, x); }
template <class X>
auto sigmoid(const X& x) { return activation(nn::Sigmoid{}, x); }
template <class X>
auto tanh(const X& x) { return activation(nn::Tanh{}, x); }
template <class X>
auto gelu(const X& x, nn::GELUApproximate approximate = nn::GELUApproximate::none) {
  return activation(nn::GELU{.approximate = approximate}, x);
}
template <class X>
auto silu(const X& x) { return activation(nn::SiLU{}, x); }
template <class X>
auto leaky_relu(const X& x, float negative_slope = 0.01f) { return activation(nn::LeakyReLU{.negative_slope = negative_slope}, x); }
template <class X>
auto elu(const X& x, float alpha = 1.0f) { return activation(nn::ELU{.alpha = alpha}, x); }
template <class X>
auto softplus(const X& x, float beta = 1.0f, float threshold = 20.0f) {
  return activation(nn::Softplus{.beta = beta, .threshold = threshold}, x);
}
template <class X>
auto hardswish(const X& x) { return activation(nn::Hardswish{}, x); }
// exp(x - max) / sum(exp(x - max)) along dim (negative dims count from the end).
template <class X>
auto softmax(const X& x, int dim) {
  return detail::SoftmaxNode<detail::operand_t<X>>(detail::operand(x), dim, false);
}
// x - max - log(sum(exp(x - max))) along dim (torch.nn.functional.log_softmax).
template <class X>
auto log_softmax(const X& x, int dim) {
  return detail::SoftmaxNode<detail::operand_t<X>>(detail::operand(x), dim, true);
}
// torch.nn.functional.dropout: training defaults to true, as in PyTorch. The mask comes from `generator`
// (kiln::manual_seed sets the default one); each call in training mode draws a new mask.
template <class X>
auto dropout(const X& x, float p = 0.5f, bool training = true, Generator& generator = default_generator()) {
  return detail::DropoutNode<detail::operand_t<X>>(detail::operand(x), p, training, generator);
}
// torch.nn.functional.batch_norm. In training mode the batch statistics normalise, and running_mean /
// running_var (when given) are updated in place.
template <class X>
auto batch_norm(const X& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight = {},
                const Tensor& bias = {}, bool training = false, float momentum = 0.1f, float eps = 1e-5f) {
  return detail::BatchNormNode<detail::operand_t<X>>(detail::operand(x), running_mean, running_var, weight, bias,
                                                     training, momentum, eps);
}
template <class X>
auto layer_norm(const X& x, const Shape& normalized_shape, const Tensor& weight = {}, const Tensor& bias = {},
                float eps = 1e-5f) {
  return detail::LayerNormNode<detail::operand_t<X>>(detail::operand(x), normalized_shape, weight, bias, eps);
}
// eps = std::nullopt is FLT_EPSILON, as PyTorch's None.
template <class X>
auto rms_norm(const X& x, const Shape& normalized_shape, const Tensor& weight = {}, std::optional<float> eps = std::nullopt) {
  return detail::RMSNormNode<detail::operand_t<X>>(detail::operand(x), normalized_shape, weight,
                                                   eps ? *eps : 1.1920928955078125e-07f);
}
// torch.flatten(x, start_dim=0, end_dim=-1).
template <class X>
auto flatten(const X& x, int start_dim = 0, int end_dim = -1) {
  auto e = detail::operand(x);
  const Shape s = e.shape();
  const int rank = static_cast<int>(s.size());
  const int a = start_dim < 0 ? start_dim + rank : start_dim, b = end_dim < 0 ? end_dim + rank : end_dim;
  if (a < 0 || b >= rank || a > b)
    detail::fail(fmt::format("flatten: dims {}..{} are out of range for an input {}", start_dim, end_dim, shape_text(s)));
  Shape to(s.begin(), s.begin() + a);
  to.push_back(numel_of(Shape(s.begin() + a, s.begin() + b + 1)));
  to.insert(to.end(), s.begin() + b + 1, s.end());
  return detail::ReshapeNode<decltype(e)>(std::move(e), std::move(to));
}
// torch.unflatten(x, dim, sizes).
template <class X>
auto unflatten(const X& x, int dim, const Shape& sizes) {
  auto e = detail::operand(x);
  const Shape s = e.shape();
  const int rank = static_cast<int>(s.size());
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) detail::fail(fmt::format("unflatten: dim {} is out of range for an input {}", dim, shape_text(s)));
  if (numel_of(sizes) != s[static_cast<std::size_t>(d)])
    detail::fail(fmt::format("unflatten: sizes {} do not multiply to {} (dim {} of {})", shape_text(sizes),
                             s[static_cast<std::size_t>(d)], dim, shape_text(s)));
  Shape to(s.begin(), s.begin() + d);
  to.insert(to.end(), sizes.begin(), sizes.end());
  to.insert(to.end(), s.begin() + d + 1, s.end());
  return detail::ReshapeNode<decltype(e)>(std::move(e), std::move(to));
}

}  // namespace F
}  // namespace kiln
