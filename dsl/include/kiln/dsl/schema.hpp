// The constexpr queries on a network value: its parameter schema (PyTorch state_dict names, shapes, init),
// parameter count, FLOPs and activation bytes per sample.
#pragma once

#include <kiln/dsl/sequential.hpp>

#include <utility>

namespace kiln {

// One parameter or buffer of a network: its state_dict name ("1.weight"), the layer's ParamSpec, and the
// index of the leaf layer that owns it.
struct SchemaEntry {
  Text name;
  ParamSpec spec;
  std::size_t leaf = 0;
};

template <std::size_t Capacity>
struct Schema {
  std::array<SchemaEntry, Capacity> entries{};
  std::size_t count = 0;
  constexpr const SchemaEntry* begin() const { return entries.data(); }
  constexpr const SchemaEntry* end() const { return entries.data() + count; }
  constexpr std::size_t size() const { return count; }
};

// Calls f(index_constant, layer) for every leaf layer of the network, in order.
template <Network Net, class F>
constexpr void for_each_leaf(const Net& net, F&& f) {
  const auto leaves = leaf_values(net);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}, std::get<I>(leaves)), ...);
  }(std::make_index_sequence<network_traits<Net>::leaf_count>{});
}

namespace detail {
// Appends leaf `leaf`'s parameters, named under its path. Not inlined: at run time (a model's construction) it is
// one function for every network, not a copy in each.
[[gnu::noinline]] constexpr std::size_t add_schema_entries(SchemaEntry* entries, std::size_t count, const Text& path,
                                                           const ParamList& params, std::size_t leaf) {
  for (const ParamSpec& p : params) entries[count++] = SchemaEntry{path + "." + p.name(), p, leaf};
  return count;
}
}  // namespace detail

template <Network Net>
constexpr auto schema(const Net& net) {
  using T = network_traits<Net>;
  Schema<T::leaf_count * ParamList::capacity> s;
  for_each_leaf(net, [&](auto i, const auto& layer) {
    s.count = detail::add_schema_entries(s.entries.data(), s.count, T::analysis.path[i],
                                         layer.params(T::analysis.in[i]), i);
  });
  return s;
}

template <Network Net>
constexpr index_t parameter_count(const Net& net) {
  index_t n = 0;
  for (const SchemaEntry& e : schema(net))
    if (!e.spec.buffer()) n += e.spec.shape.numel();
  return n;
}

// The layers' FLOPs, and one add per output value and joined path of each Residual and Sum.
template <Network Net>
constexpr index_t flops_per_sample(const Net& net) {
  using T = network_traits<Net>;
  index_t n = 0;
  for_each_leaf(net, [&](auto i, const auto& layer) { n += layer.flops(T::analysis.in[i]); });
  for (std::size_t k = 0; k < T::step_count; ++k)
    if (T::analysis.steps[k].op == Step::Op::add)
      n += (T::analysis.steps[k].input_count - 1) * T::analysis.steps[k].out.numel();
  return n;
}

// Bytes of all step outputs (layers and joins) for one sample: what an unfused evaluator writes per sample.
template <Network Net>
constexpr index_t activation_bytes_per_sample(const Net&) {
  using T = network_traits<Net>;
  index_t n = 0;
  for (std::size_t k = 0; k < T::step_count; ++k)
    n += T::analysis.steps[k].out.numel() * static_cast<index_t>(sizeof(float));
  return n;
}

template <Network Net>
constexpr Dims output_shape(const Net&) {
  return network_traits<Net>::output_dims;
}

}  // namespace kiln
