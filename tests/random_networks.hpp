// Random networks for law tests, generated at compile time (tests/runtime/test_laws_*.cpp, tests/mlir).
#pragma once

#include <kiln/kiln.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <utility>

namespace kiln::testing {

namespace nn = kiln::nn;

// A random network, generated at compile time: layer I of network Seed is chosen by a hash of (Seed, I)
// from every kind of single-input layer (the activations from nn::activations, so a new one is drawn too);
// sizes are random too, and always fit.
constexpr std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <std::uint64_t Seed, int Layer, index_t Width>
constexpr auto random_layer() {
  constexpr std::uint64_t h = mix(Seed * 131 + static_cast<std::uint64_t>(Layer));
  constexpr index_t next = 1 + static_cast<index_t>(mix(h) % 70);  // widths 1..70, odd sizes on purpose
  constexpr std::uint64_t activations = std::tuple_size_v<nn::activations>;
  if constexpr (h % 8 == 0) return nn::Linear<Width, next>{};
  else if constexpr (h % 8 == 1) return nn::Linear<Width, next, false>{};
  else if constexpr (h % 8 == 2) return nn::LayerNorm<Width>{};
  else if constexpr (h % 8 == 3) return nn::RMSNorm<Width>{};
  else if constexpr (h % 8 == 4) return nn::BatchNorm1d<Width>{.momentum = (h & 64) ? std::optional<float>{} : 0.2f};
  else if constexpr (h % 8 == 5) return nn::Dropout{0.3f};
  else return std::tuple_element_t<(h >> 8) % activations, nn::activations>{};  // every activation of kiln::nn
}

template <std::uint64_t Seed, index_t First, int Layer, index_t Width, class... Layers>
constexpr auto random_layers(Layers... layers) {
  if constexpr (Layer == 6) {
    return nn::Sequential{kiln::input<First>, layers..., nn::Linear<Width, 5>{}, nn::Softmax<-1>{}};
  } else {
    constexpr auto layer = random_layer<Seed, Layer, Width>();
    constexpr index_t width = kiln::network_traits<nn::Sequential<kiln::Input<Width>, decltype(layer)>>::output_dims.last();
    return random_layers<Seed, First, Layer + 1, width>(layers..., layer);
  }
}

// f(std::integral_constant<std::uint64_t, Seed>) for the random networks 1 to Count.
template <std::uint64_t Count, class F>
void for_each_random_seed(F&& f) {
  [&]<std::uint64_t... I>(std::integer_sequence<std::uint64_t, I...>) {
    (f(std::integral_constant<std::uint64_t, I + 1>{}), ...);
  }(std::make_integer_sequence<std::uint64_t, Count>{});
}

// Network Seed: its input width, and the network.
template <std::uint64_t Seed>
inline constexpr index_t random_input_width = 1 + static_cast<index_t>(mix(Seed) % 50);
template <std::uint64_t Seed>
inline constexpr auto random_network = random_layers<Seed, random_input_width<Seed>, 0, random_input_width<Seed>>();

// A random graph: network Seed's blocks are each a plain layer or, chosen by the hash, a Residual (a chain of
// random layers led back to the block's width), a Sum of two chains that meet at a random width, or a Concat of
// an Identity (or a chain) and a chain; a block nests another block one level down. Every layer kind is drawn,
// BatchNorm1d and Dropout inside branches too.
template <std::uint64_t Seed, int Node, index_t Width, index_t Out>
constexpr auto random_chain() {  // two random layers, then a Linear to Out
  constexpr auto first = random_layer<Seed, Node * 4 + 1, Width>();
  constexpr index_t w1 = kiln::network_traits<nn::Sequential<kiln::Input<Width>, std::remove_const_t<decltype(first)>>>::output_dims.last();
  constexpr auto second = random_layer<Seed, Node * 4 + 2, w1>();
  constexpr index_t w2 = kiln::network_traits<nn::Sequential<kiln::Input<w1>, std::remove_const_t<decltype(second)>>>::output_dims.last();
  return nn::Sequential{first, second, nn::Linear<w2, Out>{}};
}

template <std::uint64_t Seed, int Node, index_t Width, int Depth>
constexpr auto random_block() {
  constexpr std::uint64_t h = mix(Seed * 977 + static_cast<std::uint64_t>(Node) * 31 + 7);
  constexpr index_t out = 1 + static_cast<index_t>(mix(h + 1) % 40);
  if constexpr (Depth == 2 || h % 4 == 0) {
    return random_layer<Seed, Node + 100, Width>();
  } else if constexpr (h % 4 == 1) {
    constexpr auto inner = random_block<Seed, Node * 3 + 1, Width, Depth + 1>();
    constexpr index_t w = kiln::network_traits<nn::Sequential<kiln::Input<Width>, std::remove_const_t<decltype(inner)>>>::output_dims.last();
    return nn::Residual{inner, random_chain<Seed, Node * 3 + 2, w, Width>()};
  } else if constexpr (h % 4 == 2) {
    constexpr auto inner = random_block<Seed, Node * 3 + 2, Width, Depth + 1>();
    constexpr index_t w = kiln::network_traits<nn::Sequential<kiln::Input<Width>, std::remove_const_t<decltype(inner)>>>::output_dims.last();
    return nn::Sum{random_chain<Seed, Node * 3 + 1, Width, out>(), nn::Sequential{inner, nn::Linear<w, out>{}}};
  } else if constexpr (h & 16) {
    return nn::Concat{nn::Identity{}, random_chain<Seed, Node * 3 + 1, Width, out>()};
  } else {
    return nn::Concat{random_chain<Seed, Node * 3 + 1, Width, out>(), random_block<Seed, Node * 3 + 2, Width, Depth + 1>()};
  }
}

template <std::uint64_t Seed, index_t First, int Block, index_t Width, class... Blocks>
constexpr auto random_graph_blocks(Blocks... blocks) {
  if constexpr (Block == 4) {
    return nn::Sequential{kiln::input<First>, blocks..., nn::Linear<Width, 5>{}, nn::Softmax<-1>{}};
  } else {
    constexpr auto block = random_block<Seed, Block * 1000, Width, 0>();
    constexpr index_t width = kiln::network_traits<nn::Sequential<kiln::Input<Width>, std::remove_const_t<decltype(block)>>>::output_dims.last();
    return random_graph_blocks<Seed, First, Block + 1, width>(blocks..., block);
  }
}
template <std::uint64_t Seed>
inline constexpr auto random_graph = random_graph_blocks<Seed, random_input_width<Seed>, 0, random_input_width<Seed>>();

// Random network Seed, a straight line or a graph.
template <std::uint64_t Seed, bool Graph>
constexpr auto random_net() {
  if constexpr (Graph) return random_graph<Seed>;
  else return random_network<Seed>;
}

// The calls a law makes on network Seed: batches 1, 2, 7, 33 and 257, each with an input drawn from
// N(0, 1.5^2), in eval and in train mode (train not at batch 1: BatchNorm1d refuses one value per channel).
// f(x, training) for each.
template <std::uint64_t Seed, class F>
void for_each_random_call(F&& f) {
  std::mt19937 rng(static_cast<unsigned>(Seed));
  std::normal_distribution<float> normal(0.0f, 1.5f);
  for (const index_t batch : {1, 2, 7, 33, 257}) {
    Tensor x({batch, random_input_width<Seed>});
    for (float& v : x.values()) v = normal(rng);
    for (const bool training : {false, true})
      if (!(training && batch == 1)) f(x, training);
  }
}

}  // namespace kiln::testing
