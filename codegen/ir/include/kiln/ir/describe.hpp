// The DSL's side of codegen/ir: a network type and value, described as plain ir::Layer data. Every layer
// describes itself (nn::Layer: kind, attributes, parameter roles); nothing here names a layer.
#pragma once

#include <kiln/dsl/schema.hpp>
#include <kiln/ir/network.hpp>

#include <array>

namespace kiln::ir {

// Every leaf of the network, as a constant.
template <kiln::Network Net>
constexpr auto layers_of(const Net& net) {
  using T = network_traits<Net>;
  std::array<Layer, T::leaf_count> layers{};
  int dropouts = 0;
  for_each_leaf(net, [&](auto i, const auto& leaf) {
    using L = std::remove_cvref_t<decltype(leaf)>;
    Layer& l = layers[i];
    l.kind = L::kind;
    l.path = T::analysis.path[i];
    l.name = L::name();
    l.in = T::analysis.in[i];
    l.in2 = i == 0 ? T::input2_dims : Dims{};
    l.out = T::analysis.out[i];
    l.attributes = leaf.attributes(T::analysis.in[i]);
    if (L::kind == "dropout") l.attributes.add("stream", dropouts++);
  });
  int index = 0;
  for (const SchemaEntry& e : schema(net)) layers[e.leaf].params[static_cast<int>(e.spec.role)] = index++;
  return layers;
}

// The network as the compiled backends take it.
template <kiln::Network Net>
Network describe(const Net& net) {
  using T = network_traits<Net>;
  Network n;
  const auto layers = layers_of(net);
  n.layers.assign(layers.begin(), layers.end());
  n.steps.assign(T::analysis.steps.begin(), T::analysis.steps.begin() + T::step_count);
  const auto s = schema(net);
  n.buffers.assign(s.begin(), s.end());
  n.input_count = T::input_count;
  n.input = T::input_dims;
  n.input2 = T::input2_dims;
  n.output = T::output_dims;
  return n;
}

}  // namespace kiln::ir
