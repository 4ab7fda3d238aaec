// The vendor ceiling: a chain of dense layers run by oneDNN (Debian's libdnnl-dev 2.6), f32. Each layer is one
// matmul primitive with its bias and, where the network has one, its ReLU fused as an eltwise post-op; a
// Softmax over the features may close the chain. Primitives are created, and the weights reordered into the
// layout oneDNN prefers, once at construction (untimed); forward() only executes them, as a tuned inference
// deployment would. kiln_vs_torch times it beside Kiln and libtorch for the GEMM-bound networks.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace kiln::bench {

// y = x W^T + b, then ReLU if `relu`; W is [out, in] row-major (torch::nn::Linear's and Kiln's layout).
struct DenseLayer {
  const float* weight = nullptr;
  const float* bias = nullptr;
  std::int64_t in = 0, out = 0;
  bool relu = false;
};

struct DenseChain {
  std::vector<DenseLayer> layers;
  bool softmax = false;  // over the features (dim 1) after the last layer
};

class OneDnnMlp {
 public:
  OneDnnMlp(const DenseChain& chain, std::int64_t batch) {
    dnnl::memory x = plain({batch, chain.layers.front().in}, DNNL_MEMORY_NONE);
    input_ = x;
    for (std::size_t i = 0; i < chain.layers.size(); ++i) {
      const bool last = i + 1 == chain.layers.size();
      const DenseLayer& l = chain.layers[i];
      // The last layer writes into the caller's y (handle set per call); the others into oneDNN's buffers.
      dnnl::memory y = last ? plain({batch, l.out}, DNNL_MEMORY_NONE) : plain({batch, l.out}, DNNL_MEMORY_ALLOCATE);
      add_layer(l, x, y);
      x = y;
    }
    output_ = x;
    if (chain.softmax) add_softmax(output_);
  }

  // x: [batch, in], y: [batch, out], both row-major.
  void forward(const float* x, float* y) {
    input_.set_data_handle(const_cast<float*>(x));
    output_.set_data_handle(y);
    for (Step& s : steps_) s.primitive.execute(stream_, s.args);
    stream_.wait();
  }

  // oneDNN's name for the implementation it chose for the first matmul (e.g. "brg:avx512_core"): which kernels
  // the ceiling was measured with.
  const std::string& implementation() const { return implementation_; }

 private:
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;

  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, dnnl::memory> args;  // built once: execute() would otherwise hash a new map per call
  };

  dnnl::memory plain(const dnnl::memory::dims& dims, void* handle) const {
    return dnnl::memory({dims, dt::f32, tag::ab}, engine_, handle);
  }

  void add_layer(const DenseLayer& l, const dnnl::memory& x, const dnnl::memory& y) {
    // Weights as oneDNN's [in, out] matrix: W^T, i.e. W's rows read as columns (tag ba); "any" lets the
    // primitive pick its packed layout, reordered into below.
    const dnnl::memory::desc weights_any({l.in, l.out}, dt::f32, tag::any);
    const dnnl::memory::desc bias_md({1, l.out}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    if (l.relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(x.get_desc(), weights_any, bias_md, y.get_desc()), attr, engine_);
    if (implementation_.empty()) implementation_ = pd.impl_info_str();
    dnnl::memory user_weights({{l.in, l.out}, dt::f32, tag::ba}, engine_, const_cast<float*>(l.weight));
    dnnl::memory weights(pd.weights_desc(), engine_);
    dnnl::reorder(user_weights, weights).execute(stream_, user_weights, weights);
    stream_.wait();
    dnnl::memory bias(bias_md, engine_);
    std::memcpy(bias.get_data_handle(), l.bias, sizeof(float) * static_cast<std::size_t>(l.out));
    steps_.push_back({dnnl::matmul(pd),
                      {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, y}}});
  }

  // In place on the chain's output.
  void add_softmax(const dnnl::memory& y) {
    const dnnl::softmax_forward::primitive_desc pd(
        dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, y.get_desc(), 1), engine_);
    steps_.push_back({dnnl::softmax_forward(pd), {{DNNL_ARG_SRC, y}, {DNNL_ARG_DST, y}}});
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  dnnl::memory input_, output_;
  std::vector<Step> steps_;
  std::string implementation_;
};

}  // namespace kiln::bench
