// Laws: the fused kernel equals the unfused evaluator on randomly generated networks (eval and train mode,
// many batch sizes); Flatten then Unflatten is the identity; Dropout in eval is the identity; a model saved
// and loaded again is bit-exact.
#include "../support.hpp"

#include <cstring>
#include <filesystem>
#include <random>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;

namespace {

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

template <std::uint64_t Seed>
void check_fused_equals_unfused() {
  static constexpr index_t first = 1 + static_cast<index_t>(mix(Seed) % 50);
  static constexpr auto net = random_layers<Seed, first, 0, first>();
  INFO("network " << Seed << ":\n" << kiln::summary(net));
  std::mt19937 rng(static_cast<unsigned>(Seed));
  std::normal_distribution<float> normal(0.0f, 1.5f);
  for (const index_t batch : {1, 2, 7, 33, 257}) {
    Tensor x({batch, kiln::network_traits<std::remove_cvref_t<decltype(net)>>::input_dims.last()});
    for (float& v : x.values()) v = normal(rng);
    for (const bool training : {false, true}) {
      if (training && batch == 1) continue;  // BatchNorm1d refuses a single value per channel
      kiln::Model fused_model{net, Seed};
      fused_model.train(training);
      kiln::Model reference_model{fused_model};
      const Tensor fused = fused_model(x);
      const Tensor reference = reference_model.forward_reference(x);
      kiln::testing::check_close(fused, reference,
                                 "batch " + std::to_string(batch) + (training ? ", train" : ", eval"), 2e-5, 2e-6);
      const auto a = fused_model.state_dict(), b = reference_model.state_dict();
      for (const auto& [k, t] : a)
        if (t.dtype() == kiln::DType::float32) kiln::testing::check_close(t, b.at(k), k + " after the call");
    }
  }
}

}  // namespace

TEST_CASE("laws: fused == unfused on random networks", "[laws]") {
  check_fused_equals_unfused<1>();
  check_fused_equals_unfused<2>();
  check_fused_equals_unfused<3>();
  check_fused_equals_unfused<4>();
  check_fused_equals_unfused<5>();
  check_fused_equals_unfused<6>();
  check_fused_equals_unfused<7>();
  check_fused_equals_unfused<8>();
  check_fused_equals_unfused<9>();
  check_fused_equals_unfused<10>();
  check_fused_equals_unfused<11>();
  check_fused_equals_unfused<12>();
}

TEST_CASE("laws: Flatten then Unflatten is the identity, bit for bit", "[laws]") {
  static constexpr nn::Sequential net{kiln::input<2, 3, 4>, nn::Flatten{}, nn::Unflatten<1, 2, 3, 4>{}};
  static constexpr nn::Sequential mid{kiln::input<2, 3, 4>, nn::Flatten<2, 3>{}, nn::Unflatten<-1, 3, 4>{}};
  Tensor x({5, 2, 3, 4});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i) * 0.37f - 3.0f;
  kiln::Model a{net};
  kiln::Model b{mid};
  const Tensor ya = a(x), yb = b(x);
  CHECK(ya.shape() == x.shape());
  CHECK(yb.shape() == x.shape());
  CHECK(std::memcmp(ya.data(), x.data(), x.nbytes()) == 0);
  CHECK(std::memcmp(yb.data(), x.data(), x.nbytes()) == 0);
  CHECK(x.view({5, 24}).view({5, 2, 3, 4}).shares_storage_with(x));
}

TEST_CASE("laws: Dropout in eval mode is the identity; p = 0 keeps and p = 1 drops everything", "[laws]") {
  static constexpr nn::Sequential net{kiln::input<100>, nn::Dropout{0.7f}};
  Tensor x({50, 100});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 13) - 6.5f;
  kiln::Model model{net, 3};
  model.eval();
  const Tensor y = model(x);
  CHECK(std::memcmp(y.data(), x.data(), x.nbytes()) == 0);
  CHECK(model.step() == 0);  // eval calls do not advance the dropout step

  static constexpr nn::Sequential keep{kiln::input<100>, nn::Dropout{0.0f}};
  static constexpr nn::Sequential drop{kiln::input<100>, nn::Dropout{1.0f}};
  kiln::Model k{keep};
  kiln::Model d{drop};
  const Tensor yk = k(x), yd = d(x);
  CHECK(std::memcmp(yk.data(), x.data(), x.nbytes()) == 0);
  for (const float v : yd.values()) CHECK(v == 0.0f);
}

TEST_CASE("laws: save then load is bit-exact, parameters and buffers", "[laws][files]") {
  static constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 64>{}, nn::BatchNorm1d<64>{},
                                      nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<64, 10>{}};
  kiln::Model model{net, 11};
  Tensor x({16, 1, 28, 28});
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>((i * 7919) % 256) / 255.0f;
  model(x);  // one train step: running stats and num_batches_tracked move
  const auto path = std::filesystem::temp_directory_path() / "kiln_laws_roundtrip.safetensors";
  model.save_safetensors(path, {{"note", "round trip"}});
  kiln::Model loaded{net, 99};
  loaded.load_safetensors(path);
  const auto a = model.state_dict(), b = loaded.state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) {
    INFO(k);
    CHECK(t.shape() == b.at(k).shape());
    CHECK(std::memcmp(t.bytes(), b.at(k).bytes(), t.nbytes()) == 0);
  }
  CHECK(b.at("2.num_batches_tracked").data_i64()[0] == 1);
  CHECK(kiln::read_tensor_file(path).metadata.at("note") == "round trip");
  model.eval();
  loaded.eval();
  const Tensor ya = model(x), yb = loaded(x);
  CHECK(std::memcmp(ya.data(), yb.data(), ya.nbytes()) == 0);
  std::filesystem::remove(path);
}
