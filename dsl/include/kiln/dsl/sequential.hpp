// Sequential: a flat composition of layers, declared as a value whose type is the whole network.
//
//   constexpr kiln::nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::ReLU{}};
//
// The input markers (one, or two for Bilinear) give the per-sample shape and take no index; layers are
// indexed from 0 as in torch.nn.Sequential, nested Sequentials as "1.0". Declaring a network whose sizes do
// not fit is a compile error whose first line is a sentence naming the layer and both sizes.
#pragma once

#include <kiln/dsl/layer.hpp>

#include <array>
#include <cstddef>
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

// The leaf layers of a (possibly nested) Sequential, depth first, as a std::tuple type.
template <class T>
struct leaves_of {
  using type = std::tuple<T>;
};
template <index_t... D>
struct leaves_of<Input<D...>> {
  using type = std::tuple<>;
};
template <class... Items>
struct leaves_of<nn::Sequential<Items...>> {
  using type = decltype(std::tuple_cat(std::declval<typename leaves_of<Items>::type>()...));
};

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
constexpr bool is_item_v = is_input<T>::value || is_sequential<T>::value || nn::Layer<T>;

}  // namespace detail

// What the compiler knows about a network: per leaf layer its path ("1.0"), input and output dims.
template <std::size_t L>
struct Analysis {
  bool ok = true;
  Text error{};
  int input_count = 0;
  Dims input{}, input2{};
  std::array<Text, L> path{};
  std::array<Dims, L> in{}, out{};
  Dims output{};
};

namespace detail {

// Paths of the leaves ("0", "1.0", ...), depth first, in the order of leaves_of.
template <class T>
constexpr void collect_paths(const Text& prefix, Text* out, std::size_t& n) {
  if constexpr (is_sequential<T>::value) {
    [&]<class... Items>(std::type_identity<nn::Sequential<Items...>>) {
      int index = 0;
      (
          [&] {
            if constexpr (!is_input<Items>::value) {
              collect_paths<Items>(prefix.empty() ? Text{} + index : prefix + "." + index, out, n);
              ++index;
            }
          }(),
          ...);
    }(std::type_identity<T>{});
  } else {
    out[n++] = prefix;
  }
}

template <class Net, class Leaves = typename leaves_of<Net>::type>
struct analyzer;

template <class Net, class... Leaves>
struct analyzer<Net, std::tuple<Leaves...>> {
  static constexpr std::size_t L = sizeof...(Leaves);

  template <class... Items>
  static constexpr Analysis<L> run(std::type_identity<nn::Sequential<Items...>>) {
    Analysis<L> a;
    std::size_t n = 0;
    collect_paths<Net>(Text{}, a.path.data(), n);
    a.input_count = count_inputs<Items...>();
    int seen = 0;
    (
        [&] {
          if constexpr (is_input<Items>::value) (seen++ == 0 ? a.input : a.input2) = Items::dims;
        }(),
        ...);

    Dims current = a.input;
    std::size_t i = 0;
    (
        [&] {
          if (!a.ok) return;
          a.in[i] = current;
          Shaped s;
          if constexpr (requires { Leaves::takes_two_inputs; }) {
            if (i != 0 || a.input_count != 2)
              s = Shaped::fails(Text{"takes two inputs, so it must be the first layer of a Sequential declared with "
                                     "two inputs, e.g. Sequential{kiln::input<"} +
                                Leaves::in1_features + ">, kiln::input<" + Leaves::in2_features + ">, ...}");
            else
              s = Leaves::infer_pair(a.input, a.input2);
          } else if (i == 0 && a.input_count == 2) {
            s = Shaped::fails("receives the network's two inputs, but only Bilinear takes two");
          } else {
            s = Leaves::infer(current);
          }
          if (!s.ok) {
            a.ok = false;
            a.error = Text{"layer "} + a.path[i] + " (" + Leaves::name() + ") " + s.error;
            return;
          }
          a.out[i] = current = s.out;
          ++i;
        }(),
        ...);
    a.output = current;
    return a;
  }
};

template <class Net>
constexpr auto analyze() {
  return analyzer<Net>::run(std::type_identity<Net>{});
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
  static_assert((is_item_v<Items> && ...),
                "every item of a Sequential must be a kiln::nn layer, a nested Sequential or a kiln::input<...>");
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
  static constexpr Analysis<leaf_count> analysis = detail::analyze<Net>();
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
  } else {
    return std::tuple<T>{x};
  }
}

}  // namespace kiln
