// Laws: the fused kernel equals the unfused evaluator on randomly generated networks (eval and train mode,
// many batch sizes), on straight lines and on graphs; Flatten then Unflatten is the identity; Dropout in eval is
// the identity; a model saved and loaded again is bit-exact.
#include "../random_networks.hpp"
#include "../support.hpp"

#include <cstring>
#include <filesystem>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;

namespace {

// The fused kernel against the unfused evaluator with the same per-layer kernels (only the tiling differs: equal
// to rounding), and against the plain-loop reference. A BatchNorm's running mean is a mean of values that
// cancel (its input is often centred): float rounding of the plain loops shows there as ~1e-6 absolute.
template <std::uint64_t Seed, bool Graph = false>
void check_fused_equals_unfused() {
  static constexpr auto net = kiln::testing::random_net<Seed, Graph>();
  INFO("network " << Seed << ":\n" << kiln::summary(net));
  kiln::testing::for_each_random_call<Seed>([&](const Tensor& x, bool training) {
    const std::string call = "batch " + std::to_string(x.size(0)) + (training ? ", train" : ", eval");
    kiln::Model fused_model{net, Seed};
    fused_model.train(training);
    kiln::Model same_kernels_model{fused_model}, reference_model{fused_model};
    const Tensor fused = fused_model(x);
    Tensor same_kernels(fused.shape());
    same_kernels_model.forward_unfused(x, same_kernels);
    const Tensor reference = reference_model.forward_reference(x);
    kiln::testing::check_close(fused, same_kernels, call + ", same kernels", 1e-6, 1e-7);
    kiln::testing::check_close(fused, reference, call, 2e-5, 2e-6);
    const auto a = fused_model.state_dict(), b = same_kernels_model.state_dict(), c = reference_model.state_dict();
    for (const auto& [k, t] : a) {
      if (t.dtype() != kiln::DType::float32) continue;
      kiln::testing::check_close(t, b.at(k), k + " after the call, same kernels", 1e-6, 1e-6);
      kiln::testing::check_close(t, c.at(k), k + " after the call", 1e-5, Graph ? 1e-5 : 1e-6);
    }
  });
}

}  // namespace

TEST_CASE("laws: fused == unfused on random networks", "[laws]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) { check_fused_equals_unfused<decltype(seed)::value>(); });
}

TEST_CASE("laws: fused == unfused on random graphs (Residual, Sum, Concat, nested)", "[laws][graph]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) { check_fused_equals_unfused<decltype(seed)::value, true>(); });
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

TEST_CASE("laws: a graph saved then loaded is bit-exact, outputs included", "[laws][files][graph]") {
  kiln::testing::for_each_random_seed<12>([](auto seed) {
    static constexpr auto net = kiln::testing::random_graph<decltype(seed)::value>;
    kiln::Model model{net, seed};
    Tensor x({9, kiln::testing::random_input_width<decltype(seed)::value>});
    for (index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.61f * static_cast<float>(i));
    model(x);  // one train step: running stats move
    const auto path = std::filesystem::temp_directory_path() /
                      ("kiln_laws_graph_" + std::to_string(decltype(seed)::value) + ".safetensors");
    model.save_safetensors(path);
    kiln::Model loaded{net, 99};
    loaded.load_safetensors(path);
    std::filesystem::remove(path);
    for (const auto& [k, t] : model.state_dict()) {
      INFO("network " << decltype(seed)::value << ", " << k);
      CHECK(std::memcmp(t.bytes(), loaded.state_dict().at(k).bytes(), t.nbytes()) == 0);
    }
    model.eval();
    loaded.eval();
    const Tensor ya = model(x), yb = loaded(x);
    CHECK(std::memcmp(ya.data(), yb.data(), ya.nbytes()) == 0);
  });
}
