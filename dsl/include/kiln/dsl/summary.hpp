// fmt::print("{}", net): the network as PyTorch prints it, with each layer's output shape and parameter
// count, and the totals. A composite (Residual, Sum, Concat) gets a row of its own, with its output shape and
// the parameters of everything in it, and its children are indented below it.
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
  // The composites, each with the first leaf inside it (where its row goes) and its parameter count.
  std::vector<const Step*> joins;
  for (std::size_t k = 0; k < T::step_count; ++k)
    if (T::analysis.steps[k].op != Step::Op::layer) joins.push_back(&T::analysis.steps[k]);
  auto inside = [](const Text& path, const Step& join) {
    return path.view().starts_with(join.path.view()) && path.length > join.path.length &&
           path.chars[join.path.length] == '.';
  };
  auto leaf_params = [&](std::size_t i) {
    index_t params = 0;
    for (const SchemaEntry& e : s)
      if (e.leaf == i && !e.spec.buffer()) params += e.spec.shape.numel();
    return params;
  };
  std::vector<bool> shown(joins.size(), false);
  for_each_leaf(net, [&](auto i, const auto& layer) {
    const Text& path = T::analysis.path[i];
    std::size_t depth = 0;
    // Outer composites come first in `joins` reversed (a join's step follows its children's): walk from the end.
    for (std::size_t j = joins.size(); j-- > 0;) {
      if (!inside(path, *joins[j])) continue;
      if (!shown[j]) {
        shown[j] = true;
        index_t params = 0;
        for (std::size_t l = 0; l < T::leaf_count; ++l)
          if (inside(T::analysis.path[l], *joins[j])) params += leaf_params(l);
        const std::string what = joins[j]->name.view() == "Residual" ? "x + body(x)"
                                 : joins[j]->name.view() == "Sum"
                                     ? "sum of branches"
                                     : fmt::format("branches concatenated along dim {}", joins[j]->dim + 1);
        rows.push_back({fmt::format("{:{}}({}): {}: {}", "", 2 * depth, joins[j]->path.view(), joins[j]->name.view(), what),
                        std::string{joins[j]->out.text().view()}, params});
      }
      ++depth;
    }
    rows.push_back({fmt::format("{:{}}({}): {}", "", 2 * depth, path.view(), layer.repr()),
                    std::string{T::analysis.out[i].text().view()}, leaf_params(i)});
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
