// Sequential: a composition of layers, declared as a value whose type is the whole network.
//
//   constexpr kiln::nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::ReLU{}};
//
// The input markers (one, or two for Bilinear) give the per-sample shape and take no index; layers are
// indexed from 0 as in torch.nn.Sequential, nested Sequentials as "1.0", composites' children as "2.body.0"
// or "3.branches.1" (composites.hpp). Declaring a network whose sizes do not fit is a compile error whose
// first line is a sentence naming the layer and both sizes. The analysis also lists the network's data flow
// as steps (Step), which the kernels and kiln::ir walk.
#pragma once

#include <kiln/dsl/composites.hpp>
#include <kiln/dsl/layer.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

namespace kiln {

// The per-sample shape of a network input. Write kiln::input<1, 28, 28>.
template <index_t... D>
struct Input {
  static_assert(sizeof...(D) > 0 && sizeof...(D) <= Dims::max_rank, "kiln::input<...> takes 1 to 7 per-sample dims");
  static_assert(((D > 0) && ...), "kiln::input<...>: per-sample dims must be positive");
  static constexpr Dims dims{D...};
};
template <index_t... D>
inline constexpr Input<D...> input{};

namespace nn {
template <class... Items>
struct Sequential;
}

namespace detail {

template <class T>
struct is_input : std::false_type {};
template <index_t... D>
struct is_input<Input<D...>> : std::true_type {};

template <class T>
struct is_sequential : std::false_type {};
template <class... I>
struct is_sequential<nn::Sequential<I...>> : std::true_type {};

// The composites (composites.hpp): their children, as a tuple type, and how many joins they hold.
template <class T>
struct composite : std::false_type {};
template <class... L>
struct composite<nn::Residual<L...>> : std::true_type {
  using children = std::tuple<L...>;
};
template <class... B>
struct composite<nn::Sum<B...>> : std::true_type {
  using children = std::tuple<B...>;
};
template <int D, class... B>
struct composite<nn::Concat<D, B...>> : std::true_type {
  using children = std::tuple<B...>;
};

// The leaf layers of a (possibly nested) network, depth first, as a std::tuple type.
template <class T>
struct leaves_of {
  using type = std::tuple<T>;
};
template <index_t... D>
struct leaves_of<Input<D...>> {
  using type = std::tuple<>;
};
template <class... Items>
struct leaves_of<std::tuple<Items...>> {
  using type = decltype(std::tuple_cat(std::declval<typename leaves_of<Items>::type>()...));
};
template <class... Items>
struct leaves_of<nn::Sequential<Items...>> : leaves_of<std::tuple<Items...>> {};
template <class T>
  requires composite<T>::value
struct leaves_of<T> : leaves_of<typename composite<T>::children> {};

// How many composites (joins) a network holds, at any depth.
template <class T>
struct joins_of : std::integral_constant<std::size_t, 0> {};
template <class... Items>
struct joins_of<std::tuple<Items...>> : std::integral_constant<std::size_t, (0 + ... + joins_of<Items>::value)> {};
template <class... Items>
struct joins_of<nn::Sequential<Items...>> : joins_of<std::tuple<Items...>> {};
template <class T>
  requires composite<T>::value
struct joins_of<T> : std::integral_constant<std::size_t, 1 + joins_of<typename composite<T>::children>::value> {};

template <class... Items>
constexpr int count_inputs() {
  return (0 + ... + (is_input<Items>::value ? 1 : 0));
}

// Inputs must come first; returns false when an input marker follows a layer.
template <class... Items>
constexpr bool inputs_lead() {
  bool seen_layer = false, ok = true;
  ((is_input<Items>::value ? (ok = ok && !seen_layer) : (seen_layer = true)), ...);
  return ok;
}

template <class T>
constexpr bool is_item_v = is_input<T>::value || is_sequential<T>::value || composite<T>::value || nn::Layer<T>;

}  // namespace detail

// One step of a network's data flow, in the order a forward pass runs them. Values are numbered: 0 is the
// network's input, 1 its second input (Bilinear), 2 + k the output of step k. A step is a leaf layer (its
// input value; Bilinear reads values 0 and 1), or a join: `add` sums its inputs (Residual: the input and the
// body's output; Sum: the branches'), `concat` concatenates them along per-sample dim `dim`.
struct Step {
  enum class Op : std::uint8_t { layer, add, concat };
  Op op = Op::layer;
  std::size_t leaf = 0;  // Op::layer: the leaf's index
  std::array<int, nn::max_branches> inputs{};
  int input_count = 0;
  int dim = 0;     // Op::concat: the index into the per-sample dims
  Dims out{};
  Text path{};     // a join: the composite's path ("1"), for summaries and errors
  Text name{};     // a join: "Residual", "Sum" or "Concat"
};
inline constexpr int first_step_value = 2;
constexpr int value_of_step(std::size_t k) { return first_step_value + static_cast<int>(k); }

// What the compiler knows about a network: per leaf layer its path ("1.0", "2.body.0"), input and output dims,
// and the steps of its data flow (S of them: one per leaf, one per composite).
template <std::size_t L, std::size_t S = L>
struct Analysis {
  bool ok = true;
  Text error{};
  int input_count = 0;
  Dims input{}, input2{};
  std::array<Text, L> path{};
  std::array<Dims, L> in{}, out{};
  Dims output{};
  std::array<Step, S> steps{};
  std::size_t step_count = 0;
  std::array<std::size_t, L> step_of{};  // the step that runs leaf i
  int output_value = 0;

  constexpr const Dims& dims(int value) const {
    return value == 0 ? input : value == 1 ? input2 : steps[static_cast<std::size_t>(value - first_step_value)].out;
  }
};

namespace detail {

constexpr Text child_path(const Text& prefix, const Text& child) {
  return prefix.empty() ? child : prefix + "." + child;
}

// Walks a network depth first, numbering its leaves and steps and checking every shape as it goes.
template <std::size_t L, std::size_t S>
struct Walker {
  Analysis<L, S> a{};
  std::size_t leaf = 0;

  constexpr int add_step(const Step& s) {
    a.steps[a.step_count] = s;
    return value_of_step(a.step_count++);
  }
  constexpr int fail(const Text& path, const Text& name, const Text& why) {
    if (a.ok) a.error = Text{"layer "} + path + " (" + name + ")" + why;
    a.ok = false;
    return 0;
  }

  // The items of a Sequential or a Residual body, one after the other: child j at "<prefix>.j".
  template <class... Items>
  constexpr int walk_list(std::type_identity<std::tuple<Items...>>, int value, const Text& prefix) {
    int index = 0;
    (
        [&] {
          if constexpr (!is_input<Items>::value) value = walk<Items>(value, child_path(prefix, Text{} + index++));
        }(),
        ...);
    return value;
  }

  template <class T>
  constexpr int walk(int value, const Text& path) {
    if (!a.ok) return value;
    if constexpr (is_sequential<T>::value) {
      return [&]<class... Items>(std::type_identity<nn::Sequential<Items...>>) {
        return walk_list(std::type_identity<std::tuple<Items...>>{}, value, path);
      }(std::type_identity<T>{});
    } else if constexpr (composite<T>::value) {
      return walk_composite<T>(value, path);
    } else {
      return walk_leaf<T>(value, path);
    }
  }

  template <class T>
  constexpr int walk_composite(int value, const Text& path) {
    using Children = typename composite<T>::children;
    const Dims& in = a.dims(value);
    Step join{};
    join.path = path;
    join.name = T::name();
    if constexpr (requires { T::body; }) {  // Residual
      const int body = walk_list(std::type_identity<Children>{}, value, child_path(path, "body"));
      if (!a.ok) return 0;
      if (!(a.dims(body) == in))
        return fail(path, join.name, Text{", body maps "} + in.text() + " to " + a.dims(body).text() +
                                         "; a residual needs the same shape");
      join.op = Step::Op::add;
      join.inputs[join.input_count++] = value;
      join.inputs[join.input_count++] = body;
      join.out = in;
      return add_step(join);
    } else {
      [&]<class... B>(std::type_identity<std::tuple<B...>>) {
        int k = 0;
        ((join.inputs[join.input_count++] = walk<B>(value, child_path(path, Text{"branches."} + k++))), ...);
      }(std::type_identity<Children>{});
      if (!a.ok) return 0;
      if constexpr (requires { T::dim; }) return join_concat(join, T::dim);
      else return join_sum(join);
    }
  }

  constexpr int join_sum(Step& join) {
    const Dims& first = a.dims(join.inputs[0]);
    for (int k = 1; k < join.input_count; ++k)
      if (!(a.dims(join.inputs[k]) == first))
        return fail(join.path, join.name, Text{", branch "} + k + " gives " + a.dims(join.inputs[k]).text() +
                                              " but branch 0 gives " + first.text() + "; summed branches need the same shape");
    join.op = Step::Op::add;
    join.out = first;
    return add_step(join);
  }

  constexpr int join_concat(Step& join, int dim) {
    const Dims& first = a.dims(join.inputs[0]);
    const int d = sample_dim(dim, first.rank);
    if (d < 0)
      return fail(join.path, join.name, Text{" joins along dim "} + dim + (d == -1 ? " (the batch dim)" : " (out of range)") +
                                            ", but its branches give " + first.text());
    Dims out = first;
    for (int k = 1; k < join.input_count; ++k) {
      const Dims& b = a.dims(join.inputs[k]);
      bool agree = b.rank == first.rank;
      for (int i = 0; agree && i < b.rank; ++i) agree = i == d || b.sizes[i] == first.sizes[i];
      if (!agree)
        return fail(join.path, join.name, Text{", branch "} + k + " gives " + b.text() + " but branch 0 gives " +
                                              first.text() + "; concatenated branches must agree on every dim but " +
                                              "dim " + dim);
      out.sizes[d] += b.sizes[d];
    }
    join.op = Step::Op::concat;
    join.dim = d;
    join.out = out;
    return add_step(join);
  }

  template <class Leaf>
  constexpr int walk_leaf(int value, const Text& path) {
    const std::size_t i = leaf++;
    a.path[i] = path;
    a.in[i] = a.dims(value);
    Step step{};
    step.leaf = i;
    step.inputs[step.input_count++] = value;
    Shaped s;
    const bool network_inputs = i == 0 && value == 0 && a.input_count == 2;
    if constexpr (requires { Leaf::takes_two_inputs; }) {
      if (!network_inputs)
        s = Shaped::fails(Text{"takes two inputs, so it must be the first layer of a Sequential declared with "
                               "two inputs, e.g. Sequential{kiln::input<"} +
                          Leaf::in1_features + ">, kiln::input<" + Leaf::in2_features + ">, ...}");
      else
        s = Leaf::infer_pair(a.input, a.input2);
      step.inputs[step.input_count++] = 1;
    } else if (network_inputs) {
      s = Shaped::fails("receives the network's two inputs, but only Bilinear takes two");
    } else {
      s = Leaf::infer(a.in[i]);
    }
    if (!s.ok) return fail(path, Leaf::name(), Text{" "} + s.error);
    a.out[i] = step.out = s.out;
    a.step_of[i] = a.step_count;
    return add_step(step);
  }
};

template <class Net>
constexpr auto analyze() {
  constexpr std::size_t L = std::tuple_size_v<typename leaves_of<Net>::type>;
  Walker<L, L + joins_of<Net>::value> w;
  [&]<class... Items>(std::type_identity<nn::Sequential<Items...>>) {
    w.a.input_count = count_inputs<Items...>();
    int seen = 0;
    (
        [&] {
          if constexpr (is_input<Items>::value) (seen++ == 0 ? w.a.input : w.a.input2) = Items::dims;
        }(),
        ...);
  }(std::type_identity<Net>{});
  w.a.output_value = w.template walk<Net>(0, Text{});
  if (w.a.ok) w.a.output = w.a.dims(w.a.output_value);
  return w.a;
}

}  // namespace detail

// The error a network that does not fit produces. The template arguments are the sentence. g++ prints it
// whole in its first line ("In instantiation of 'struct kiln::network_error<...{"layer 2 ..."}>'").
// clang prints a string template argument only up to about 32 characters, so for clang the sentence is cut
// at spaces into pieces that short, printed one after the other in the static_assert line.
template <auto...>
inline constexpr bool network_fits = false;
template <FixedString... Sentence>
struct network_error {
  static_assert(network_fits<Sentence...>, "this network does not fit together (the sentence above says where)");
};

namespace detail {

#if defined(__clang__)
inline constexpr std::size_t error_piece_length = 32;
#else
inline constexpr std::size_t error_piece_length = Text::capacity;
#endif

// Where to cut a sentence into pieces of at most error_piece_length characters, at spaces where possible.
struct Pieces {
  std::size_t start[Text::capacity]{}, length[Text::capacity]{};
  std::size_t count = 0;
};
constexpr Pieces cut(const Text& t) {
  Pieces p;
  std::size_t at = 0;
  while (at < t.length) {
    std::size_t n = t.length - at;
    if (n > error_piece_length) {
      n = error_piece_length;
      while (n > 1 && t.chars[at + n - 1] != ' ') --n;
      if (t.chars[at + n - 1] != ' ') n = error_piece_length;
    }
    p.start[p.count] = at;
    p.length[p.count++] = n;
    at += n;
  }
  return p;
}

template <class Net>
inline constexpr auto analysis_v = analyze<Net>();
template <class Net>
inline constexpr Pieces pieces_v = cut(analysis_v<Net>.error);

template <class Net, std::size_t... I>
constexpr void report_error(std::index_sequence<I...>) {
  constexpr const auto& a = analysis_v<Net>;
  constexpr const Pieces& p = pieces_v<Net>;
  [[maybe_unused]] network_error<FixedString<p.length[I]>(a.error.chars + p.start[I])...> report;
}

template <class... Items>
constexpr bool check_network() {
  static_assert((is_item_v<Items> && ...), "every item of a Sequential must be a kiln::nn layer, a nested Sequential, "
                                          "a composite (Residual, Sum, Concat) or a kiln::input<...>");
  constexpr int inputs = count_inputs<Items...>();
  if constexpr (inputs == 0) {
    return true;  // a nested Sequential: checked as part of the network that holds it
  } else {
    static_assert(inputs_lead<Items...>(), "kiln::input<...> markers must come before the first layer");
    static_assert(inputs <= 2, "a Sequential takes at most two inputs (the second one feeds Bilinear)");
    using Net = nn::Sequential<Items...>;
    if constexpr (!analysis_v<Net>.ok) report_error<Net>(std::make_index_sequence<pieces_v<Net>.count>{});
    return true;
  }
}

}  // namespace detail

namespace nn {

template <class... Items>
struct Sequential {
  std::tuple<Items...> items;

  constexpr Sequential(Items... xs) : items{xs...} {}  // NOLINT: Sequential{a, b, c}

  static_assert(kiln::detail::check_network<Items...>());
};
template <class... Items>
Sequential(Items...) -> Sequential<Items...>;

}  // namespace nn

// Everything the type of a network says, for the runtime and the kernels:
//   leaves (std::tuple of the leaf layer types), leaf_count, analysis (paths and dims per leaf),
//   input_dims, input2_dims, input_count, output_dims.
template <class Net>
struct network_traits {
  using leaves = typename detail::leaves_of<Net>::type;
  static constexpr std::size_t leaf_count = std::tuple_size_v<leaves>;
  static constexpr std::size_t step_count = leaf_count + detail::joins_of<Net>::value;
  static constexpr Analysis<leaf_count, step_count> analysis = detail::analyze<Net>();
  static constexpr bool is_graph = step_count > leaf_count;  // has a composite
  static constexpr int input_count = analysis.input_count;
  static constexpr Dims input_dims = analysis.input;
  static constexpr Dims input2_dims = analysis.input2;
  static constexpr Dims output_dims = analysis.output;
  template <std::size_t I>
  using leaf = std::tuple_element_t<I, leaves>;
};

template <class T>
concept Network = detail::is_sequential<T>::value && (network_traits<T>::input_count > 0);

// The leaf layers of a network value, depth first, as a std::tuple (values carry p, eps, momentum, ...).
template <class T>
constexpr auto leaf_values(const T& x) {
  if constexpr (detail::is_input<T>::value) {
    return std::tuple<>{};
  } else if constexpr (detail::is_sequential<T>::value) {
    return std::apply([](const auto&... xs) { return std::tuple_cat(leaf_values(xs)...); }, x.items);
  } else if constexpr (requires { x.body; }) {
    return std::apply([](const auto&... xs) { return std::tuple_cat(leaf_values(xs)...); }, x.body);
  } else if constexpr (requires { x.branches; }) {
    return std::apply([](const auto&... xs) { return std::tuple_cat(leaf_values(xs)...); }, x.branches);
  } else {
    return std::tuple<T>{x};
  }
}

}  // namespace kiln
