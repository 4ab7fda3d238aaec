// Laws on straight-line networks: the fused kernel equals the unfused evaluator on random networks (eval and
// train mode, many batch sizes); Flatten then Unflatten is the identity; Dropout in eval is the identity; a model
// saved and loaded again is bit-exact. The graph laws are in test_laws_graphs.cpp (apart, so that the two
// heaviest halves compile in parallel).
#include "laws_check.hpp"

#include <cstring>
#include <filesystem>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;
using kiln::testing::check_fused_equals_unfused;

TEST_CASE("laws: fused == unfused on random networks", "[laws]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) { check_fused_equals_unfused<decltype(seed)::value>(); });
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

TEST_CASE("laws: Dropout in eval mode is the identity, p = 0 keeps and p = 1 drops everything", "[laws]") {
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
