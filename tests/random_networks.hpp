// Random networks for law tests, generated at compile time (tests/runtime/test_laws.cpp, tests/mlir).
#pragma once

#include <kiln/kiln.hpp>

#include <cstdint>
#include <optional>

namespace kiln::testing {

namespace nn = kiln::nn;

// A random network, generated at compile time: layer I of network Seed is chosen by a hash of (Seed, I)
// from every kind of single-input layer; sizes are random too, and always fit.
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
  if constexpr (h % 9 == 0) return nn::Linear<Width, next>{};
  else if constexpr (h % 9 == 1) return nn::Linear<Width, next, false>{};
  else if constexpr (h % 9 == 2) return nn::ReLU{};
  else if constexpr (h % 9 == 3) return nn::Sigmoid{};
  else if constexpr (h % 9 == 4) return nn::Tanh{};
  else if constexpr (h % 9 == 5) return nn::LayerNorm<Width>{};
  else if constexpr (h % 9 == 6) return nn::RMSNorm<Width>{};
  else if constexpr (h % 9 == 7) return nn::BatchNorm1d<Width>{.momentum = (h & 64) ? std::optional<float>{} : 0.2f};
  else return nn::Dropout{0.3f};
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

// Network Seed: its input width, and the network.
template <std::uint64_t Seed>
inline constexpr index_t random_input_width = 1 + static_cast<index_t>(mix(Seed) % 50);
template <std::uint64_t Seed>
inline constexpr auto random_network = random_layers<Seed, random_input_width<Seed>, 0, random_input_width<Seed>>();

}  // namespace kiln::testing
