// The expression-template evaluators: for every layer type (a node of kiln::nn, which only stores),
// Eval<Layer> computes its forward pass on a tile of samples. Each specialisation lives beside its math in
// codegen/et/include/kiln/et/<layer>.hpp. The driver in fused.hpp walks tiles of batch rows through them.
#pragma once

#include <kiln/dsl/layer.hpp>
#include <kiln/runtime/philox.hpp>

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
  index_t first_sample = 0;       // index in the batch of the tile's first sample
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

// The contract of an Eval<Layer> (checked by the driver):
//   static bool passes_through(const Layer&, bool training);  // true: y is x (no work, the pointer passes on)
//   static void forward(const Layer&, Dims in, const LayerParams&, const float* x, float* y, index_t samples,
//                       const TileContext&);                   // x and y never alias
//   static void backward(const Layer&, Dims in, const LayerParams&, const LayerGrads&, const float* x,
//                        const float* y, const float* dy, float* dx, index_t samples, const TileContext&);
//       // given the layer's input x, output y and dL/dy on a tile: dL/dx into dx (skipped when dx is null),
//       // and dL/d(parameters) added to the LayerGrads, as PyTorch accumulates them
}  // namespace kiln::et
