// A network as plain data: what the templated DSL knows about a network, flattened into literal structs that
// a compiled backend (the MLIR lowering in codegen/mlir) reads without instantiating a template per network.
//
//   constexpr auto layers = kiln::ir::layers_of(net);   // std::array<ir::Layer, L>, a constant
//   kiln::ir::Network view = kiln::ir::describe(net);   // layers + inputs + the buffer list, at run time
//
// Activations are row-major [N, features...] with a dynamic batch N. A kernel reads its parameters and buffers
// from one array of pointers in the network's state_dict order (ir::Network::buffers), then the input(s), then
// the output.
#pragma once

#include <kiln/dsl/dims.hpp>
#include <kiln/dsl/layer.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kiln::ir {

enum class Kind : std::uint8_t {
  linear, bilinear, relu, sigmoid, tanh, softmax, flatten, unflatten, dropout, batch_norm, layer_norm, rms_norm
};

constexpr std::string_view kind_name(Kind k) {
  constexpr std::string_view names[] = {"linear",  "bilinear",  "relu",       "sigmoid",    "tanh",      "softmax",
                                        "flatten", "unflatten", "dropout",    "batch_norm", "layer_norm", "rms_norm"};
  return names[static_cast<int>(k)];
}

// One leaf layer. Fields a kind does not use keep their defaults. Buffer indices point into the kernel's
// buffer array (-1: the layer has no such tensor).
struct Layer {
  Kind kind{};
  Text path{};  // "1.0", as in the state_dict
  Text name{};  // "Linear<784, 256>"
  Dims in{}, in2{}, out{};
  index_t out_features = 0;         // Linear, Bilinear
  index_t norm_size = 0;            // LayerNorm, RMSNorm: elements normalised together
  int axis = 0;                     // Softmax: the per-sample dim
  float eps = 0, p = 0, momentum = 0;
  bool has_momentum = false;        // BatchNorm1d: momentum None is a cumulative average
  bool track_running_stats = false;
  bool eps_added_to_rms = false;    // RMSNorm
  std::uint32_t dropout_stream = 0; // Dropout: ordinal among the network's Dropouts
  int weight = -1, bias = -1, running_mean = -1, running_var = -1, num_batches_tracked = -1;
};

// One entry of the kernel's buffer array: a parameter or buffer of the state_dict.
struct Buffer {
  std::string name;
  Dims shape;
  DType dtype = DType::float32;
};

// The whole network, as the compiled backends take it.
struct Network {
  std::vector<Layer> layers;
  std::vector<Buffer> buffers;
  int input_count = 1;
  Dims input{}, input2{}, output{};
};

// The kernel's calling convention, for every backend that compiles a network to machine code:
//   void kernel(void* const* buffers, std::int64_t batch, std::uint64_t seed, std::uint64_t step);
// buffers: the Network's buffers in order, then the input(s), then the output. Two entry points per network,
// <name>_eval and <name>_train (dropout active, BatchNorm1d with batch statistics updating its running stats).
using KernelFn = void (*)(void* const* buffers, std::int64_t batch, std::uint64_t seed, std::uint64_t step);

// A canonical text of the network: equal for equal networks, so a cache can key compiled kernels on it.
inline std::string to_string(const Dims& d) {
  std::string s = "[";
  for (int i = 0; i < d.rank; ++i) {
    if (i) s += ',';  // not `"," + std::to_string(...)`: g++ 12 -O3 warns about it (bogus -Wrestrict, GCC PR 105329)
    s += std::to_string(d.sizes[i]);
  }
  return s + "]";
}
inline std::string to_string(const Network& net) {
  std::string s = "inputs " + std::to_string(net.input_count) + " " + to_string(net.input) + " " +
                  to_string(net.input2) + " -> " + to_string(net.output) + "\n";
  for (const Buffer& b : net.buffers)
    s += "buffer " + b.name + " " + to_string(b.shape) + (b.dtype == DType::int64 ? " i64\n" : " f32\n");
  for (const Layer& l : net.layers) {
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, " %a %a %a %d%d%d %u %d %ld %ld | %d %d %d %d %d\n", l.eps, l.p,
                  l.momentum, l.has_momentum, l.track_running_stats, l.eps_added_to_rms, l.dropout_stream, l.axis,
                  l.out_features, l.norm_size, l.weight, l.bias, l.running_mean, l.running_var, l.num_batches_tracked);
    s += std::string(kind_name(l.kind)) + " " + std::string(l.path.view()) + " " + to_string(l.in) + " " +
         to_string(l.in2) + " " + to_string(l.out) + numbers;
  }
  return s;
}

}  // namespace kiln::ir
