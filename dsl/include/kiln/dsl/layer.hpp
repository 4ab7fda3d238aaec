// What every layer provides to the rest of Kiln, and the small vocabulary they share.
//
// A layer is a literal type in kiln::nn. Its sizes are template arguments, its hyperparameters constexpr
// members with PyTorch's defaults. It answers, in one place (dsl/layers/<layer>.hpp), the nn::Layer concept:
//   static constexpr std::string_view kind;       // "linear": what the compiled backends dispatch on
//   static constexpr Text name();                 // "Linear<784, 256>", used in error sentences
//   static constexpr Shaped infer(Dims in);       // the shape rule: output dims, or the sentence saying why not
//   constexpr ParamList params(Dims in) const;    // parameters and buffers: role (so state_dict name), shape, init
//   constexpr Attributes attributes(Dims in) const;  // every hyperparameter, as named numbers (kiln::ir)
//   constexpr index_t flops(Dims in) const;       // per sample (a multiply-add counts 2)
//   std::string repr() const;                     // PyTorch's repr, "Linear(in_features=784, ...)"
// An element-wise activation also carries its math (dsl/layers/activations.hpp), which every backend
// instantiates; the other layers' math lives in codegen/et/include/kiln/et/<layer>.hpp (expression templates)
// and codegen/mlir/src/build_network.cpp (MLIR). Composites (Residual, Sum, Concat) are not layers: they are
// structure (composites.hpp), which the analysis in sequential.hpp turns into steps.
#pragma once

#include <kiln/dsl/dims.hpp>

#include <concepts>
#include <cstdint>
#include <string>

namespace kiln {

enum class DType { float32, int64 };

constexpr std::string_view dtype_name(DType d) { return d == DType::float32 ? "F32" : "I64"; }

// PyTorch's default initialisations, as distributions (Kiln draws them from its own seeded RNG).
enum class Init { uniform, ones, zeros };

// What a parameter or buffer is for. Its state_dict name, whether it is a buffer (in state_dict() but not in
// parameters()) and its dtype follow from the role.
enum class Role : std::uint8_t { weight, bias, running_mean, running_var, num_batches_tracked };
inline constexpr int role_count = 5;

constexpr std::string_view role_name(Role r) {
  constexpr std::string_view names[role_count] = {"weight", "bias", "running_mean", "running_var",
                                                  "num_batches_tracked"};
  return names[static_cast<int>(r)];
}

// One parameter or buffer of a layer.
struct ParamSpec {
  Role role = Role::weight;
  Dims shape;  // the full shape (no batch)
  Init init = Init::zeros;
  float bound = 0;  // Init::uniform draws from U(-bound, bound)

  constexpr std::string_view name() const { return role_name(role); }  // Sequential prefixes the path: "1.weight"
  constexpr bool buffer() const { return role >= Role::running_mean; }
  constexpr DType dtype() const { return role == Role::num_batches_tracked ? DType::int64 : DType::float32; }
};

struct ParamList {
  static constexpr int capacity = 5;
  ParamSpec items[capacity]{};
  constexpr ParamList() = default;
  int count = 0;
  constexpr void add(const ParamSpec& p) { items[count++] = p; }
  constexpr const ParamSpec* begin() const { return items; }
  constexpr const ParamSpec* end() const { return items + count; }
};

// A layer's hyperparameters as named numbers (floats, sizes, flags and enums all fit a double exactly): what
// the compiled backends read, and, with everything else in kiln::ir's description, the JIT's cache key.
struct Attribute {
  std::string_view name;
  double value = 0;
};
struct Attributes {
  static constexpr int capacity = 6;
  Attribute items[capacity]{};
  int count = 0;
  constexpr Attributes& add(std::string_view name, double value) {
    items[count++] = {name, value};
    return *this;
  }
  constexpr const Attribute* find(std::string_view name) const {
    for (int i = 0; i < count; ++i)
      if (items[i].name == name) return &items[i];
    return nullptr;
  }
  constexpr const Attribute* begin() const { return items; }
  constexpr const Attribute* end() const { return items + count; }
};

// The result of a shape rule: the output dims, or the reason the input does not fit.
struct Shaped {
  bool ok = true;
  Dims out{};
  Text error{};
  static constexpr Shaped fits(Dims d) { return {true, d, {}}; }
  static constexpr Shaped fails(Text why) { return {false, {}, why}; }
};

// sqrt usable in constant expressions (std::sqrt is not constexpr in C++20); Newton's method in double.
constexpr double constexpr_sqrt(double x) {
  if (x <= 0) return 0;
  double r = x > 1 ? x : 1;
  for (int i = 0; i < 100; ++i) {
    const double next = 0.5 * (r + x / r);
    if (next == r) break;
    r = next;
  }
  return r;
}

// Normalise a PyTorch dim (which counts the batch dim, negative from the end) against a per-sample rank.
// Returns the index into the per-sample dims, or -1 for the batch dim, or -2 when out of range.
constexpr int sample_dim(int dim, int sample_rank) {
  const int full_rank = sample_rank + 1;
  const int d = dim < 0 ? dim + full_rank : dim;
  if (d < 0 || d >= full_rank) return -2;
  return d - 1;
}

namespace nn {
template <class L>
concept Layer = requires(const L& layer, Dims d) {
  { L::kind } -> std::convertible_to<std::string_view>;
  { L::name() } -> std::same_as<Text>;
  { layer.attributes(d) } -> std::same_as<Attributes>;
  { L::infer(d) } -> std::same_as<Shaped>;
  { layer.params(d) } -> std::same_as<ParamList>;
  { layer.flops(d) } -> std::convertible_to<index_t>;
  { layer.repr() } -> std::convertible_to<std::string>;
};
}  // namespace nn

}  // namespace kiln
