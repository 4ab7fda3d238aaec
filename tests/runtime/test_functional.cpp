// kiln::F against the same PyTorch goldens as the layers, and its shape errors.
#include "../support.hpp"

#include <kiln/et/functional.hpp>

namespace F = kiln::F;
namespace nn = kiln::nn;
using kiln::Tensor;
using kiln::testing::check_close;
using kiln::testing::golden_path;

namespace {
kiln::TensorFile golden(const std::string& name) { return kiln::read_tensor_file(golden_path(name)); }
const Tensor& at(const kiln::TensorFile& f, const std::string& key) { return f.tensors.at(key); }
}  // namespace

TEST_CASE("F: linear, bilinear and activations match PyTorch", "[functional]") {
  for (const int b : {1, 3, 64, 1000}) {
    const std::string s = ".b" + std::to_string(b);
    const auto lin = golden("linear");
    check_close(F::linear(at(lin, "in0" + s), at(lin, "0.weight"), at(lin, "0.bias")), at(lin, "eval.out" + s), "linear");
    const auto nob = golden("linear_nobias");
    check_close(F::linear(at(nob, "in0" + s), at(nob, "0.weight")), at(nob, "eval.out" + s), "linear without bias");
    const auto l3 = golden("linear_3d");
    check_close(F::linear(at(l3, "in0" + s), at(l3, "0.weight"), at(l3, "0.bias")), at(l3, "eval.out" + s), "linear 3d");
    const auto bil = golden("bilinear");
    check_close(F::bilinear(at(bil, "in0" + s), at(bil, "in1" + s), at(bil, "0.weight"), at(bil, "0.bias")),
                at(bil, "eval.out" + s), "bilinear");
    for (const char* name : {"relu", "sigmoid", "tanh"}) {
      const auto g = golden(name);
      const Tensor& x = at(g, "in0" + s);
      const Tensor y = std::string{name} == "relu" ? Tensor(F::relu(x))
                       : std::string{name} == "sigmoid" ? Tensor(F::sigmoid(x))
                                                        : Tensor(F::tanh(x));
      check_close(y, at(g, "eval.out" + s), name);
    }
  }
}

TEST_CASE("F: softmax, norms, flatten and unflatten match PyTorch", "[functional]") {
  for (const int b : {1, 3, 64, 1000}) {
    const std::string s = ".b" + std::to_string(b);
    const auto sm = golden("softmax_3d_dim1");
    check_close(F::softmax(at(sm, "in0" + s), 1), at(sm, "eval.out" + s), "softmax dim 1");
    const auto sl = golden("softmax_3d_last");
    check_close(F::softmax(at(sl, "in0" + s), -1), at(sl, "eval.out" + s), "softmax dim -1");
    const auto ln = golden("layernorm_2d");
    check_close(F::layer_norm(at(ln, "in0" + s), {3, 8}, at(ln, "0.weight"), at(ln, "0.bias")), at(ln, "eval.out" + s),
                "layer_norm");
    const auto rn = golden("rmsnorm");
    check_close(F::rms_norm(at(rn, "in0" + s), {16}, at(rn, "0.weight")), at(rn, "eval.out" + s), "rms_norm");
    const auto re = golden("rmsnorm_eps");
    check_close(F::rms_norm(at(re, "in0" + s), {16}, at(re, "0.weight"), 1e-6f), at(re, "eval.out" + s), "rms_norm eps");
    const auto fl = golden("flatten_mid");
    check_close(F::flatten(at(fl, "in0" + s), 2, 3), at(fl, "eval.out" + s), "flatten");
    const auto uf = golden("unflatten");
    check_close(F::unflatten(at(uf, "in0" + s), 1, {2, 3, 4}), at(uf, "eval.out" + s), "unflatten");
  }
}

TEST_CASE("F: batch_norm in eval and train mode matches PyTorch, running stats included", "[functional]") {
  for (const int b : {3, 64, 1000}) {
    const std::string s = ".b" + std::to_string(b);
    const auto g = golden("batchnorm_3d");
    const Tensor& x = at(g, "in0" + s);
    check_close(F::batch_norm(x, at(g, "0.running_mean"), at(g, "0.running_var"), at(g, "0.weight"), at(g, "0.bias")),
                at(g, "eval.out" + s), "batch_norm eval");
    Tensor rm = at(g, "0.running_mean").clone(), rv = at(g, "0.running_var").clone();
    check_close(F::batch_norm(x, rm, rv, at(g, "0.weight"), at(g, "0.bias"), /*training=*/true), at(g, "train.out" + s),
                "batch_norm train");
    check_close(rm, at(g, "train.state" + s + ".0.running_mean"), "running_mean");
    check_close(rv, at(g, "train.state" + s + ".0.running_var"), "running_var");
  }
  const auto g = golden("batchnorm");
  CHECK_THROWS_WITH(Tensor(F::batch_norm(at(g, "in0.b1"), Tensor{}, Tensor{}, Tensor{}, Tensor{}, true)),
                    Catch::Contains("expected more than 1 value per channel when training"));
}

TEST_CASE("F: dropout draws the same mask as the network's Dropout for the same seed", "[functional]") {
  const auto g = golden("dropout_p05");
  kiln::Generator gen{std::stoull(g.metadata.at("dropout_seed")), 0};
  check_close(F::dropout(at(g, "in0.b64"), 0.5f, true, gen), at(g, "train.out.b64"), "dropout p=0.5");
  CHECK(gen.calls == 1);
  check_close(F::dropout(at(g, "in0.b64"), 0.5f, /*training=*/false), at(g, "in0.b64"), "dropout in eval");
  CHECK_THROWS_WITH(F::dropout(at(g, "in0.b64"), 1.5f), Catch::Contains("p must be between 0 and 1, but got 1.5"));
}

TEST_CASE("F: composed expressions evaluate as one pass and equal the step-by-step result", "[functional]") {
  const auto g = golden("net_mlp_norm");
  const Tensor& x = at(g, "in0.b64");
  const Tensor h1 = F::linear(x, at(g, "0.weight"), at(g, "0.bias"));
  const Tensor h2 = F::layer_norm(h1, {64}, at(g, "1.weight"), at(g, "1.bias"));
  const Tensor h3 = F::tanh(h2);
  const Tensor fused = F::tanh(F::layer_norm(F::linear(x, at(g, "0.weight"), at(g, "0.bias")), {64}, at(g, "1.weight"),
                                             at(g, "1.bias")));
  check_close(fused, h3, "fused == unfused");
  const Tensor chain = F::softmax(
      F::linear(F::sigmoid(F::rms_norm(F::linear(h3, at(g, "3.weight"), at(g, "3.bias")), {64}, at(g, "4.weight"))),
                at(g, "6.weight"), at(g, "6.bias")),
      1);
  check_close(chain, at(g, "eval.out.b64"), "the whole network through F");
}

TEST_CASE("F: add and cat compose a residual block and a concat as the composites do", "[functional][graph]") {
  static constexpr nn::Sequential net{kiln::input<3, 4>,
                                      nn::Residual{nn::Linear<4, 8>{}, nn::ReLU{}, nn::Linear<8, 4>{}},
                                      nn::Concat{nn::dim<1>, nn::Identity{}, nn::Tanh{}}};
  kiln::Model model{net, 9};
  model.eval();
  Tensor x({5, 3, 4});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.7f * static_cast<float>(i));
  const auto sd = model.state_dict();
  const auto h = F::add(x, F::linear(F::relu(F::linear(x, sd.at("0.body.0.weight"), sd.at("0.body.0.bias"))),
                                     sd.at("0.body.2.weight"), sd.at("0.body.2.bias")));
  const Tensor y = F::cat(h, F::tanh(h), 1);
  check_close(y, model(x), "F::cat(F::add(...)) == the network");
  CHECK(y.shape() == kiln::Shape{5, 6, 4});
  const Tensor along_last = F::cat(x, F::tanh(x));
  CHECK(along_last.shape() == kiln::Shape{5, 3, 8});
  CHECK(along_last[4] == Approx(std::tanh(x[0])).epsilon(1e-6));
}

TEST_CASE("F: shape errors say what was expected and what was given", "[functional][errors]") {
  const Tensor x({4, 10}), w({3, 12}), b({5});
  CHECK_THROWS_WITH(F::linear(x, w), Catch::Contains("input [4, 10] has 10 features in its last dim but weight [3, 12] expects 12"));
  CHECK_THROWS_WITH(F::linear(x, Tensor({3, 10}), b), Catch::Contains("bias must be [3], got [5]"));
  CHECK_THROWS_WITH(F::softmax(x, 2), Catch::Contains("dim 2 is out of range for an input [4, 10]"));
  CHECK_THROWS_WITH(F::layer_norm(x, {5}), Catch::Contains("normalized_shape [5] is not a suffix of the input shape [4, 10]"));
  CHECK_THROWS_WITH(F::unflatten(x, 1, {3, 4}), Catch::Contains("sizes [3, 4] do not multiply to 10"));
  CHECK_THROWS_WITH(F::batch_norm(x, Tensor({4}), Tensor({10})), Catch::Contains("running_mean must be [10], got [4]"));
  CHECK_THROWS_WITH(F::add(x, Tensor({4, 9})), Catch::Contains("F::add: shapes [4, 10] and [4, 9] differ"));
  CHECK_THROWS_WITH(F::cat(x, Tensor({3, 10}), 1), Catch::Contains("F::cat: [4, 10] and [3, 10] differ off dim 1"));
  CHECK_THROWS_WITH(F::cat(x, x, 0), Catch::Contains("dim 0 is out of range or the batch dim"));
}
