// fmt::print("{}", net): the network as PyTorch prints it, with each layer's output shape and parameter
// count, and the totals. A composite (Residual, Sum, Concat) gets a row of its own, with its output shape and
// the parameters of everything in it, and its children are indented below it.
#pragma once

#include <kiln/dsl/schema.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

namespace kiln {

namespace detail {

// What summary() prints of a network, as plain data: only the gathering is per network (a template), the
// formatting below is compiled once.
struct SummaryLeaf {
  std::string_view path;
  std::string repr;
  Dims out;
  index_t params = 0;
};
struct SummaryInput {
  std::string inputs;                // "[N, 784]", or both inputs of a two-input network
  std::vector<SummaryLeaf> leaves;   // in order
  std::span<const Step> steps;       // the data flow: its joins get rows of their own
  index_t flops = 0, activation_bytes = 0;
};

// Whether the leaf at `path` is inside the composite `join`.
inline bool summary_inside(std::string_view path, const Step& join) {
  const std::string_view p = join.path.view();
  return path.starts_with(p) && path.size() > p.size() && path[p.size()] == '.';
}

inline std::string summary_join_row(const Step& join, std::size_t depth) {
  const std::string_view name = join.name.view();
  const std::string what = name == "Residual" ? "x + body(x)"
                           : name == "Sum"    ? "sum of branches"
                                              : fmt::format("branches concatenated along dim {}", join.dim + 1);
  return fmt::format("{:{}}({}): {}: {}", "", 2 * depth, join.path.view(), name, what);
}

inline std::string format_summary(const SummaryInput& in) {
  // Columns: "(index): repr", the output shape, the parameter count; widths from the longest entries.
  struct Row {
    std::string what, shape;
    index_t params;
  };
  std::vector<Row> rows;
  rows.push_back({"(input): " + in.inputs, "output", -1});
  // The composites; a join's step follows its children's, so the outer ones come first walking from the end.
  std::vector<const Step*> joins;
  for (const Step& step : in.steps)
    if (step.op != Step::Op::layer) joins.push_back(&step);
  std::vector<bool> shown(joins.size(), false);
  for (const SummaryLeaf& leaf : in.leaves) {
    std::size_t depth = 0;
    for (std::size_t j = joins.size(); j-- > 0;) {
      if (!summary_inside(leaf.path, *joins[j])) continue;
      if (!shown[j]) {  // the composite's row, above its first leaf
        shown[j] = true;
        index_t params = 0;
        for (const SummaryLeaf& l : in.leaves)
          if (summary_inside(l.path, *joins[j])) params += l.params;
        rows.push_back({summary_join_row(*joins[j], depth), std::string{joins[j]->out.text().view()}, params});
      }
      ++depth;
    }
    rows.push_back({fmt::format("{:{}}({}): {}", "", 2 * depth, leaf.path, leaf.repr),
                    std::string{leaf.out.text().view()}, leaf.params});
  }
  std::size_t what_width = 0, shape_width = 0;
  for (const Row& r : rows) what_width = std::max(what_width, r.what.size()), shape_width = std::max(shape_width, r.shape.size());
  std::string out = "Sequential(\n";
  for (const Row& r : rows)
    fmt::format_to(std::back_inserter(out), "  {:<{}}  {:<{}}  {}\n", r.what, what_width, r.shape, shape_width,
                   r.params < 0 ? std::string{"params"} : fmt::format("{}", r.params));
  out += ")\n";
  index_t params = 0;
  for (const SummaryLeaf& l : in.leaves) params += l.params;
  fmt::format_to(std::back_inserter(out),
                 "parameters: {} ({:.1f} KiB float32), FLOPs per sample: {}, activations per sample: {} bytes\n",
                 params, static_cast<double>(params) * 4 / 1024, in.flops, in.activation_bytes);
  return out;
}

}  // namespace detail

template <Network Net>
std::string summary(const Net& net) {
  using T = network_traits<Net>;
  detail::SummaryInput in{std::string{T::input_dims.text().view()} +
                              (T::input_count == 2 ? ", " + std::string{T::input2_dims.text().view()} : ""),
                          {}, {T::analysis.steps.data(), T::step_count}, flops_per_sample(net),
                          activation_bytes_per_sample(net)};
  for_each_leaf(net, [&](auto i, const auto& layer) {
    in.leaves.push_back({T::analysis.path[i].view(), layer.repr(), T::analysis.out[i], 0});
  });
  for (const SchemaEntry& e : schema(net))
    if (!e.spec.buffer()) in.leaves[e.leaf].params += e.spec.shape.numel();
  return detail::format_summary(in);
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
