// The expression-template evaluators: for every layer type (a node of kiln::nn, which only stores),
// Eval<Layer> computes its forward pass on a tile of samples. Each specialisation lives beside its math in
// codegen/et/include/kiln/et/<layer>.hpp. The driver in fused.hpp walks tiles of batch rows through them.
#pragma once

#include <kiln/dsl/layer.hpp>
#include <kiln/et/simd.hpp>
#include <kiln/runtime/philox.hpp>

#include <concepts>
#include <cstdint>

namespace kiln::et {

// Where a layer's parameters and buffers are (null where the layer has none), and what the driver
// computed for it in this forward call.
struct LayerParams {
  const float* weight = nullptr;
  const float* bias = nullptr;
  float* running_mean = nullptr;
  float* running_var = nullptr;
  std::int64_t* num_batches_tracked = nullptr;
  const float* packed_weight = nullptr;    // Linear: the weight in the micro-kernel's layout (linear.hpp)
  const float* packed_weight_t = nullptr;  // Linear: the transposed weight, same layout (for the backward pass)
  const float* scale = nullptr;          // BatchNorm1d: per-channel y = x * scale + shift for this call
  const float* shift = nullptr;
};

// Where a layer's parameter gradients accumulate (null where the layer has none).
struct LayerGrads {
  float* weight = nullptr;
  float* bias = nullptr;
};

// What a tile of samples knows about the forward call it belongs to.
struct TileContext {
  bool training = false;
  index_t first_sample = 0;       // index of the tile's first sample in the (global, kiln::dist) batch: dropout
  std::uint64_t seed = 0;         // dropout: the model's seed
  std::uint32_t step = 0;         // dropout: the model's training step
  std::uint32_t dropout_stream = 0;  // dropout: this layer's ordinal among the network's Dropouts
  bool reverse_weights = false;   // walk the weights' output blocks last to first (every other call)
};

// Primary template: a layer without an evaluator is a compile error that names it.
template <class Layer>
struct Eval {
  static_assert(sizeof(Layer) == 0, "kiln::et: this layer has no expression-template evaluator");
};

// Points the LayerParams field of a parameter's role at its storage.
inline void bind_param(LayerParams& p, Role role, void* data) {
  switch (role) {
    case Role::weight: p.weight = static_cast<const float*>(data); break;
    case Role::bias: p.bias = static_cast<const float*>(data); break;
    case Role::running_mean: p.running_mean = static_cast<float*>(data); break;
    case Role::running_var: p.running_var = static_cast<float*>(data); break;
    case Role::num_batches_tracked: p.num_batches_tracked = static_cast<std::int64_t*>(data); break;
  }
}
// The LayerGrads field of a parameter's role (weight and bias have gradients; buffers none).
inline float*& grad_of(LayerGrads& g, Role role) { return role == Role::bias ? g.bias : g.weight; }

// What the driver asks of Eval<Layer>. x and y never alias; `samples` rows of the layer's per-sample shape `in`.
//   passes_through: true when y is x (no work: the pointer passes on), e.g. a view or eval-mode Dropout.
//   backward: given the layer's input x, output y and dL/dy on a tile, dL/dx into dx (skipped when dx is
//     null) and dL/d(parameters) added to the LayerGrads, as PyTorch accumulates them.
template <class Layer>
concept OneInputEvaluator = requires(const Layer& layer, Dims in, const LayerParams& p, const LayerGrads& g,
                                     const float* x, float* y, index_t samples, const TileContext& ctx) {
  Eval<Layer>::forward(layer, in, p, x, y, samples, ctx);
  Eval<Layer>::backward(layer, in, p, g, x, x, x, y, samples, ctx);
};

// A layer fed by the network's two inputs (Bilinear): x1 is the tile's first input, x2 its second; its
// backward writes dL/dx1 and dL/dx2 (each skipped when null).
template <class Layer>
concept TwoInputEvaluator = requires(const Layer& layer, Dims in, const LayerParams& p, const LayerGrads& g,
                                     const float* x, float* y, index_t samples, const TileContext& ctx) {
  Eval<Layer>::forward_two_inputs(layer, in, p, x, x, y, samples, ctx);
  Eval<Layer>::backward_two_inputs(layer, in, p, g, x, x, x, y, y, samples, ctx);
  Eval<Layer>::forward_two_inputs_reference(layer, in, p, x, x, y, samples, ctx);
};

template <class Layer>
concept Evaluator = requires(const Layer& layer) {
  { Eval<Layer>::passes_through(layer, true) } -> std::same_as<bool>;
} && (OneInputEvaluator<Layer> || TwoInputEvaluator<Layer>);

// A layer that may need the statistics of its whole input before it can compute any row (BatchNorm1d):
//   uses_batch_stats(training) (on the layer), values_per_channel(in, batch),
//   prepare(...): per-channel scale and shift (from the running stats, or from the batch x, updating them),
//   backward_batch(...): its backward over the whole batch.
template <class Layer>
concept BatchStatsEvaluator = requires(const Layer& layer, Dims in, LayerParams& p, const LayerGrads& g,
                                       const float* x, float* y, index_t batch) {
  { layer.uses_batch_stats(true) } -> std::same_as<bool>;
  { Eval<Layer>::values_per_channel(in, batch) } -> std::convertible_to<index_t>;
  Eval<Layer>::prepare(layer, in, p, true, x, batch, y, y);
  Eval<Layer>::backward_batch(layer, in, p, g, x, x, y, batch);
};

// A layer whose weight the forward reads in its own layout (packed_size floats), packed when the parameters
// change (Linear, Bilinear).
template <class Layer>
concept PackingEvaluator = requires(const float* w, float* out) {
  { Eval<Layer>::packed_size } -> std::convertible_to<index_t>;
  Eval<Layer>::pack(w, out);
};
// A layer whose backward reads its weight transposed, in the same layout (Linear): packed when a backward needs it.
template <class Layer>
concept TransposePackingEvaluator = requires(const float* w, float* out) {
  { Eval<Layer>::packed_t_size } -> std::convertible_to<index_t>;
  Eval<Layer>::pack_t(w, out);
};

// Where the fused kernel runs an element-wise layer as the epilogue of the step before it (fused.hpp: the
// layer before computes each output vector, maps it, and stores it; the element-wise layer makes no pass of its
// own over the tile):
//   EpilogueEvaluator: the layer's forward as a function of one vector, epilogue(layer)(v) (the activations);
//   FusingEvaluator: a forward that maps each output vector by such a function before storing it (Linear).
template <class Layer>
concept EpilogueEvaluator = requires(const Layer& layer, vfloat v) {
  { Eval<Layer>::epilogue(layer)(v) } -> std::same_as<vfloat>;
};
struct NoEpilogue {
  vfloat operator()(vfloat v) const { return v; }
};
template <class Layer>
concept FusingEvaluator = requires(const Layer& layer, Dims in, const LayerParams& p, const float* x, float* y,
                                   index_t samples, const TileContext& ctx) {
  Eval<Layer>::forward_then(layer, in, p, x, y, samples, ctx, NoEpilogue{});
};

// A layer with an independent plain-loop forward (the tests' reference for the fused kernel).
template <class Layer>
concept ReferenceEvaluator = requires(const Layer& layer, Dims in, const LayerParams& p, const float* x, float* y,
                                      index_t samples, const TileContext& ctx) {
  Eval<Layer>::forward_reference(layer, in, p, x, y, samples, ctx);
};

}  // namespace kiln::et
