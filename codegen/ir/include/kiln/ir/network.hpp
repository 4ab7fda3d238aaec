// A network as plain data: what the templated DSL knows about a network, flattened into literal structs that
// a compiled backend (the MLIR lowering in codegen/mlir) reads without instantiating a template per network.
//
//   constexpr auto layers = kiln::ir::layers_of(net);   // std::array<ir::Layer, L>, a constant
//   kiln::ir::Network view = kiln::ir::describe(net);   // layers + inputs + the buffer list, at run time
//
// A layer is described generically: its kind ("linear"), its dims, its hyperparameters as named numbers
// (nn::Attributes, from the layer's attributes()) and, per role, where its parameters are. Nothing here is
// specific to one layer, so a new layer needs nothing new here.
//
// Activations are row-major [N, features...] with a dynamic batch N. A kernel reads its parameters and buffers
// from one array of pointers in the network's state_dict order (ir::Network::buffers), then the input(s), then
// the output.
#pragma once

#include <kiln/dsl/dims.hpp>
#include <kiln/dsl/layer.hpp>
#include <kiln/dsl/schema.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kiln::ir {

// One leaf layer.
struct Layer {
  std::string_view kind;  // the layer's nn kind: "linear", "gelu", ...
  Text path{};            // "1.0", as in the state_dict
  Text name{};            // "Linear<784, 256>"
  Dims in{}, in2{}, out{};
  Attributes attributes{};  // the layer's hyperparameters; a Dropout also has its "stream" (ordinal among Dropouts)
  std::array<int, role_count> params{-1, -1, -1, -1, -1};  // per Role: index into the buffer array, or -1

  constexpr int param(Role r) const { return params[static_cast<int>(r)]; }
  constexpr bool has(Role r) const { return param(r) >= 0; }
};

// The whole network, as the compiled backends take it. buffers: every parameter and buffer, in state_dict order.
// steps: its data flow (kiln::Step, dsl/sequential.hpp): one step per layer (Step::leaf indexes `layers`) and
// one per Residual, Sum or Concat, in the order they run; values 0 and 1 are the inputs, 2 + k step k's output.
// Empty steps mean the layers one after the other.
struct Network {
  std::vector<Layer> layers;
  std::vector<Step> steps;
  std::vector<SchemaEntry> buffers;
  int input_count = 1;
  Dims input{}, input2{}, output{};
};

// The kernel's calling convention, for every backend that compiles a network to machine code:
//   void kernel(void* const* buffers, std::int64_t batch, std::uint64_t seed, std::uint64_t step);
// buffers: the Network's buffers in order, then the kernel's packed weights (a buffer of the backend's making,
// filled by its pack entry point from the Network's buffers whenever they change), then the input(s), then the
// output. Two entry points per network, <name>_eval and <name>_train (dropout active, BatchNorm1d with batch
// statistics updating its running stats), and <name>_pack(buffers), which reads the Network's buffers and
// writes the packed weights.
using KernelFn = void (*)(void* const* buffers, std::int64_t batch, std::uint64_t seed, std::uint64_t step);
using PackFn = void (*)(void* const* buffers);

// A canonical text of the network: equal for equal networks, so a cache can key compiled kernels on it. Every
// field of every struct above is in it (attributes exactly, as hexadecimal floats).
inline std::string to_string(const Dims& d) {
  std::string s = "[";
  for (int i = 0; i < d.rank; ++i) {
    if (i) s += ',';  // not `"," + std::to_string(...)`: g++ 12 -O3 warns about it (bogus -Wrestrict, GCC PR 105329)
    s += std::to_string(d.sizes[i]);
  }
  return s + "]";
}
inline std::string to_string(const Layer& l) {
  // Appended piece by piece: `" " + std::string(...)` draws g++ 12's bogus -Wrestrict at -O3 (GCC PR 105329).
  std::string s{l.kind};
  for (const std::string_view piece : {l.path.view(), l.name.view()}) (s += ' ') += piece;
  for (const Dims& d : {l.in, l.in2, l.out}) (s += ' ') += to_string(d);
  for (const Attribute& a : l.attributes) {
    char value[40];
    std::snprintf(value, sizeof value, "%a", a.value);
    (((s += ' ') += a.name) += '=') += value;
  }
  s += " |";
  for (const int p : l.params) (s += ' ') += std::to_string(p);
  return s;
}
inline std::string to_string(const Step& step) {
  constexpr std::string_view ops[] = {"layer", "add", "concat"};
  std::string s{"step "};
  s += ops[static_cast<int>(step.op)];
  for (const std::string_view piece : {step.path.view(), step.name.view()}) (s += ' ') += piece;
  (s += " leaf ") += std::to_string(step.leaf);
  (s += " dim ") += std::to_string(step.dim);
  s += " in";
  for (int j = 0; j < step.input_count; ++j) (s += ' ') += std::to_string(step.inputs[static_cast<std::size_t>(j)]);
  (s += " -> ") += to_string(step.out);
  return s;
}
inline std::string to_string(const Network& net) {
  std::string s = "inputs " + std::to_string(net.input_count) + " " + to_string(net.input) + " " +
                  to_string(net.input2) + " -> " + to_string(net.output) + "\n";
  for (const SchemaEntry& b : net.buffers)
    s += "buffer " + std::string(b.name.view()) + " " + std::string(role_name(b.spec.role)) + " " +
         to_string(b.spec.shape) + "\n";
  for (const Layer& l : net.layers) s += to_string(l) + "\n";
  for (const Step& step : net.steps) s += to_string(step) + "\n";
  return s;
}

}  // namespace kiln::ir
