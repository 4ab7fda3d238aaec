// The DSL's side of codegen/ir: a network type and value, described as plain ir::Layer data.
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/dsl/layers/batchnorm.hpp>
#include <kiln/dsl/layers/bilinear.hpp>
#include <kiln/dsl/layers/dropout.hpp>
#include <kiln/dsl/layers/linear.hpp>
#include <kiln/dsl/layers/norms.hpp>
#include <kiln/dsl/layers/reshape.hpp>
#include <kiln/dsl/layers/softmax.hpp>
#include <kiln/dsl/schema.hpp>
#include <kiln/ir/network.hpp>

#include <array>

namespace kiln::ir {

namespace detail {
template <class T, template <index_t...> class Tmpl>
struct is_sized : std::false_type {};
template <template <index_t...> class Tmpl, index_t... S>
struct is_sized<Tmpl<S...>, Tmpl> : std::true_type {};

template <class T>
struct is_bilinear : std::false_type {};
template <index_t I1, index_t I2, index_t O, bool B>
struct is_bilinear<nn::Bilinear<I1, I2, O, B>> : std::true_type {};
template <class T>
struct is_softmax : std::false_type {};
template <int D>
struct is_softmax<nn::Softmax<D>> : std::true_type {};
template <class T>
struct is_flatten : std::false_type {};
template <int S, int E>
struct is_flatten<nn::Flatten<S, E>> : std::true_type {};
template <class T>
struct is_unflatten : std::false_type {};
template <int D, index_t... S>
struct is_unflatten<nn::Unflatten<D, S...>> : std::true_type {};

// The fields of one leaf, except buffer indices and the dropout stream.
template <class L>
constexpr Layer describe_leaf(const L& layer, Dims in, Dims in2, Dims out) {
  Layer l;
  l.name = L::name();
  l.in = in;
  l.in2 = in2;
  l.out = out;
  if constexpr (nn::is_linear<L>) {
    l.kind = Kind::linear;
    l.out_features = L::out_features;
  } else if constexpr (is_bilinear<L>::value) {
    l.kind = Kind::bilinear;
    l.out_features = L::out_features;
  } else if constexpr (std::is_same_v<L, nn::ReLU>) {
    l.kind = Kind::relu;
  } else if constexpr (std::is_same_v<L, nn::Sigmoid>) {
    l.kind = Kind::sigmoid;
  } else if constexpr (std::is_same_v<L, nn::Tanh>) {
    l.kind = Kind::tanh;
  } else if constexpr (is_softmax<L>::value) {
    l.kind = Kind::softmax;
    l.axis = L::axis(in);
  } else if constexpr (is_flatten<L>::value) {
    l.kind = Kind::flatten;
  } else if constexpr (is_unflatten<L>::value) {
    l.kind = Kind::unflatten;
  } else if constexpr (std::is_same_v<L, nn::Dropout>) {
    l.kind = Kind::dropout;
    l.p = layer.p;
  } else if constexpr (requires { L::num_features; }) {
    l.kind = Kind::batch_norm;
    l.eps = layer.eps;
    l.has_momentum = layer.momentum.has_value();
    l.momentum = layer.momentum ? *layer.momentum : 0.0f;
    l.track_running_stats = layer.track_running_stats;
  } else if constexpr (is_sized<L, nn::LayerNorm>::value) {
    l.kind = Kind::layer_norm;
    l.eps = layer.eps;
    l.norm_size = L::normalized_shape.numel();
  } else if constexpr (is_sized<L, nn::RMSNorm>::value) {
    l.kind = Kind::rms_norm;
    l.eps = layer.eps_value();
    l.eps_added_to_rms = layer.eps_placement == nn::RMSNormEps::added_to_rms;
    l.norm_size = L::normalized_shape.numel();
  } else {
    static_assert(sizeof(L) == 0, "kiln::ir: this layer has no plain-data description");
  }
  return l;
}
}  // namespace detail

// Every leaf of the network, as a constant.
template <kiln::Network Net>
constexpr auto layers_of(const Net& net) {
  using T = network_traits<Net>;
  std::array<Layer, T::leaf_count> layers{};
  std::uint32_t dropouts = 0;
  for_each_leaf(net, [&](auto i, const auto& leaf) {
    Layer l = detail::describe_leaf(leaf, T::analysis.in[i], i == 0 ? T::input2_dims : Dims{}, T::analysis.out[i]);
    l.path = T::analysis.path[i];
    if (l.kind == Kind::dropout) l.dropout_stream = dropouts++;
    layers[i] = l;
  });
  int index = 0;
  for (const SchemaEntry& e : schema(net)) {
    Layer& l = layers[e.leaf];
    const std::string_view name = e.spec.name.view(), local = name.substr(name.rfind('.') + 1);
    if (local == "weight") l.weight = index;
    else if (local == "bias") l.bias = index;
    else if (local == "running_mean") l.running_mean = index;
    else if (local == "running_var") l.running_var = index;
    else if (local == "num_batches_tracked") l.num_batches_tracked = index;
    ++index;
  }
  return layers;
}

// The network as the compiled backends take it.
template <kiln::Network Net>
Network describe(const Net& net) {
  using T = network_traits<Net>;
  Network n;
  const auto layers = layers_of(net);
  n.layers.assign(layers.begin(), layers.end());
  for (const SchemaEntry& e : schema(net)) n.buffers.push_back({std::string{e.spec.name.view()}, e.spec.shape, e.spec.dtype});
  n.input_count = T::input_count;
  n.input = T::input_dims;
  n.input2 = T::input2_dims;
  n.output = T::output_dims;
  return n;
}

}  // namespace kiln::ir
