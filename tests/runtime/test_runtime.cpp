// The runtime's pieces on their own: PyTorch's init distributions, dropout statistics, tensors, named tensors in
// files, the summary, Fashion-MNIST. (The random numbers and the dropout mask: test_dropout_draws.cpp.)
#include "../support.hpp"

#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

namespace nn = kiln::nn;
using kiln::index_t;
using kiln::Tensor;

TEST_CASE("runtime: default init follows PyTorch's distributions and the seed", "[runtime]") {
  static constexpr nn::Sequential net{kiln::input<784>, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{}, nn::LayerNorm<256>{}};
  kiln::Model a{net, 5};
  kiln::Model b{net, 5};
  kiln::Model c{net, 6};
  const auto sa = a.state_dict();
  const Tensor& w = sa.at("0.weight");
  const double bound = 1.0 / std::sqrt(784.0);
  double sum = 0, sq = 0;
  for (const float v : w.values()) {
    REQUIRE(std::abs(v) <= bound);
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(w.numel());
  CHECK(std::abs(sum / n) < 0.01 * bound);
  CHECK(std::abs(sq / n - bound * bound / 3) < 0.01 * bound * bound);  // the variance of U(-k, k) is k^2 / 3
  for (const float v : sa.at("0.bias").values()) CHECK(std::abs(v) <= bound);
  for (const float v : sa.at("1.weight").values()) CHECK(v == 1.0f);
  for (const float v : sa.at("1.running_var").values()) CHECK(v == 1.0f);
  for (const float v : sa.at("2.bias").values()) CHECK(v == 0.0f);
  CHECK(b.state_dict().at("0.weight")[123] == w[123]);
  CHECK(c.state_dict().at("0.weight")[123] != w[123]);
}

TEST_CASE("runtime: dropout at p = 0.5 keeps half, scales by 2, and changes with the step", "[runtime]") {
  static constexpr nn::Sequential net{kiln::input<1000>, nn::Dropout{0.5f}};
  kiln::Model model{net, 77};
  Tensor x({200, 1000});
  x.fill(1.0f);
  const Tensor first = model(x), second = model(x);
  index_t kept = 0, same = 0;
  for (index_t i = 0; i < x.numel(); ++i) {
    CHECK((first[i] == 0.0f || first[i] == 2.0f));
    kept += first[i] != 0.0f;
    same += first[i] == second[i];
  }
  const double fraction = static_cast<double>(kept) / static_cast<double>(x.numel());
  CHECK(std::abs(fraction - 0.5) < 0.005);  // 200000 draws: 5 standard deviations is 0.0056
  CHECK(std::abs(static_cast<double>(same) / static_cast<double>(x.numel()) - 0.5) < 0.005);
  kiln::Model replay{net, 77};
  const Tensor again = replay(x);
  for (index_t i = 0; i < x.numel(); i += 997) CHECK(again[i] == first[i]);
}

TEST_CASE("runtime: tensors share storage on copy and view, copy on clone", "[runtime]") {
  Tensor a({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = a;
  b[0] = 10;
  CHECK(a[0] == 10);
  Tensor c = a.clone();
  c[1] = 20;
  CHECK(a[1] == 2);
  const Tensor v = a.view({3, 2});
  CHECK(v.shape() == kiln::Shape{3, 2});
  CHECK(v.shares_storage_with(a));
  CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % 64 == 0);
  CHECK(a.slice_rows(1, 2)[0] == 4);
  CHECK_THROWS_WITH(a.view({4, 2}), Catch::Contains("shape [4, 2] has 8 elements but the tensor [2, 3] has 6"));
  CHECK_THROWS_WITH(Tensor({2, 2}, {1, 2, 3}), Catch::Contains("3 values given for shape [2, 2]"));
  CHECK_THROWS_WITH(Tensor({2}, kiln::DType::int64).data(), Catch::Contains("asked for F32 data of a I64 tensor [2]"));
}

TEST_CASE("runtime: save_tensors / load_tensors keep float32 and int64 tensors and metadata", "[runtime][files]") {
  Tensor f({2, 2}, {1.5f, -2.0f, 3.25f, 0.0f});
  Tensor i({3}, kiln::DType::int64);
  i.data_i64()[2] = -7;
  Tensor scalar({}, kiln::DType::int64);
  scalar.data_i64()[0] = 42;
  const auto path = std::filesystem::temp_directory_path() / "kiln_tensors.safetensors";
  kiln::save_tensors(path, {{"f", f}, {"i", i}, {"s", scalar}, {"empty", Tensor({0, 3})}}, {{"k", "v"}});
  const kiln::TensorFile back = kiln::read_tensor_file(path);
  CHECK(back.tensors.at("f")[2] == 3.25f);
  CHECK(back.tensors.at("i").data_i64()[2] == -7);
  CHECK(back.tensors.at("s").dim() == 0);
  CHECK(back.tensors.at("s").data_i64()[0] == 42);
  CHECK(back.tensors.at("empty").shape() == kiln::Shape{0, 3});
  CHECK(back.metadata.at("k") == "v");
  std::filesystem::remove(path);
}

TEST_CASE("runtime: the summary prints every layer with its output shape and parameters", "[runtime]") {
  static constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                                      nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<256, 10>{}};
  const std::string s = fmt::format("{}", net);
  INFO(s);
  CHECK_THAT(s, Catch::Contains("(input): [N, 1, 28, 28]"));
  CHECK_THAT(s, Catch::Contains("(1): Linear(in_features=784, out_features=256, bias=True)"));
  CHECK_THAT(s, Catch::Contains("(2): BatchNorm1d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"));
  CHECK_THAT(s, Catch::Contains("(4): Dropout(p=0.2, inplace=False)"));
  CHECK_THAT(s, Catch::Matches("(.|\\n)*\\(5\\): Linear\\(in_features=256, out_features=10, bias=True\\) +\\[N, 10\\] +2570\\n(.|\\n)*"));
  CHECK_THAT(s, Catch::Contains("parameters: 204042"));
}

TEST_CASE("runtime: the summary shows a composite's row above its indented children, and its counts", "[runtime][graph]") {
  static constexpr nn::Sequential net{kiln::input<63>,
                                      nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<63, 128>{}, nn::ReLU{}}},
                                      nn::Residual{nn::LayerNorm<191>{}, nn::Linear<191, 191>{}},
                                      nn::Sum{nn::Linear<191, 4>{}, nn::Linear<191, 4, false>{}}};
  const std::string s = fmt::format("{}", net);
  INFO(s);
  CHECK_THAT(s, Catch::Matches("(.|\\n)*\\n  \\(0\\): Concat: branches concatenated along dim 1 +\\[N, 191\\] +8192\\n"
                               "    \\(0.branches.0\\): Identity\\(\\) +\\[N, 63\\] +0\\n"
                               "    \\(0.branches.1.0\\): Linear\\(in_features=63, out_features=128, bias=True\\) +\\[N, 128\\] +8192\\n"
                               "(.|\\n)*"));
  CHECK_THAT(s, Catch::Contains("(1): Residual: x + body(x)"));
  CHECK_THAT(s, Catch::Contains("    (1.body.1): Linear(in_features=191, out_features=191, bias=True)"));
  CHECK_THAT(s, Catch::Contains("(2): Sum: sum of branches"));
  // Parameters: 63*128+128, 2*191, 191*191+191, 191*4+4, 191*4; FLOPs: the layers' and the joins' adds.
  CHECK(kiln::parameter_count(net) == 8192 + 382 + 36672 + 768 + 764);
  kiln::index_t layer_flops = 0;
  kiln::for_each_leaf(net, [&](auto i, const auto& layer) { layer_flops += layer.flops(kiln::network_traits<std::remove_const_t<decltype(net)>>::analysis.in[i]); });
  CHECK(kiln::flops_per_sample(net) == layer_flops + 191 + 4);
  CHECK(kiln::activation_bytes_per_sample(net) == 4 * (63 + 128 + 128 + 191 + 191 + 191 + 191 + 4 + 4 + 4));
}

TEST_CASE("runtime: Fashion-MNIST loads from Debian's dataset-fashion-mnist", "[runtime][files]") {
  const kiln::LabelledImages test = kiln::load_fashion_mnist(false);
  CHECK(test.images.shape() == kiln::Shape{10000, 1, 28, 28});
  CHECK(test.labels.shape() == kiln::Shape{10000});
  CHECK(test.labels.data_i64()[0] == 9);  // the first test image is an ankle boot
  float lo = 1, hi = 0;
  for (const float v : test.images.values()) lo = std::min(lo, v), hi = std::max(hi, v);
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);
}
