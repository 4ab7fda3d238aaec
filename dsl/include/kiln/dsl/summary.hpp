// fmt::print("{}", net): the network as PyTorch prints it, with each layer's output shape and parameter
// count, and the totals.
#pragma once

#include <kiln/dsl/schema.hpp>

#include <fmt/format.h>

#include <string>

namespace kiln {

template <Network Net>
std::string summary(const Net& net) {
  using T = network_traits<Net>;
  const auto s = schema(net);
  std::string out = "Sequential(\n";
  auto row = [&](std::string_view label, const std::string& what, std::string_view shape, index_t params) {
    fmt::format_to(std::back_inserter(out), "  {:<62} {:<18} {}\n", fmt::format("({}): {}", label, what), shape,
                   params);
  };
  out += fmt::format("  {:<62} {:<18} {}\n", "(input): " + std::string{T::input_dims.text().view()} +
                         (T::input_count == 2 ? ", " + std::string{T::input2_dims.text().view()} : ""),
                     "output", "params");
  for_each_leaf(net, [&](auto i, const auto& layer) {
    index_t params = 0;
    for (const SchemaEntry& e : s)
      if (e.leaf == i && !e.spec.buffer) params += e.spec.shape.numel();
    row(T::analysis.path[i].view(), layer.repr(), T::analysis.out[i].text().view(), params);
  });
  out += ")\n";
  fmt::format_to(std::back_inserter(out),
                 "parameters: {} ({:.1f} KiB float32), FLOPs per sample: {}, activations per sample: {} bytes\n",
                 parameter_count(net), static_cast<double>(parameter_count(net)) * 4 / 1024, flops_per_sample(net),
                 activation_bytes_per_sample(net));
  return out;
}

}  // namespace kiln

template <kiln::Network Net>
struct fmt::formatter<Net> : fmt::formatter<std::string_view> {
  template <class Context>
  auto format(const Net& net, Context& ctx) const {
    const std::string s = kiln::summary(net);
    return fmt::formatter<std::string_view>::format(s, ctx);
  }
};
