// fmt::print("{}", net): the network as PyTorch prints it, with each layer's output shape and parameter
// count, and the totals.
#pragma once

#include <kiln/dsl/schema.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

namespace kiln {

template <Network Net>
std::string summary(const Net& net) {
  using T = network_traits<Net>;
  const auto s = schema(net);
  // Columns: "(index): repr", the output shape, the parameter count; widths from the longest entries.
  struct Row {
    std::string what, shape;
    index_t params;
  };
  std::vector<Row> rows;
  rows.push_back({"(input): " + std::string{T::input_dims.text().view()} +
                      (T::input_count == 2 ? ", " + std::string{T::input2_dims.text().view()} : ""),
                  "output", -1});
  for_each_leaf(net, [&](auto i, const auto& layer) {
    index_t params = 0;
    for (const SchemaEntry& e : s)
      if (e.leaf == i && !e.spec.buffer()) params += e.spec.shape.numel();
    rows.push_back({fmt::format("({}): {}", T::analysis.path[i].view(), layer.repr()),
                    std::string{T::analysis.out[i].text().view()}, params});
  });
  std::size_t what_width = 0, shape_width = 0;
  for (const Row& r : rows) what_width = std::max(what_width, r.what.size()), shape_width = std::max(shape_width, r.shape.size());
  std::string out = "Sequential(\n";
  for (const Row& r : rows)
    fmt::format_to(std::back_inserter(out), "  {:<{}}  {:<{}}  {}\n", r.what, what_width, r.shape, shape_width,
                   r.params < 0 ? std::string{"params"} : fmt::format("{}", r.params));
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
