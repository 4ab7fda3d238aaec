// Losses and optimizers against PyTorch, step for step (tests/golden/make_train_goldens.py): 20 full-batch
// steps of SGD (momentum, dampening, nesterov, weight decay), Adam, AdamW, clipping, StepLR, cosine annealing.
#include "../support.hpp"

#include <cmath>
#include <cstring>
#include <limits>

namespace nn = kiln::nn;
namespace optim = kiln::optim;
using kiln::Tensor;
using kiln::testing::check_close;

namespace {

kiln::TensorFile train_golden(const std::string& name) {
  return kiln::read_tensor_file(std::filesystem::path{KILN_GOLDEN_DIR} / ".." / "train_data" / (name + ".safetensors"));
}

kiln::TensorMap with_prefix(const kiln::TensorFile& f, const std::string& prefix) {
  kiln::TensorMap m;
  for (const auto& [k, t] : f.tensors)
    if (k.starts_with(prefix)) m.emplace(k.substr(prefix.size()), t);
  return m;
}

constexpr nn::Sequential net_a{kiln::input<10>, nn::Linear<10, 16>{}, nn::ReLU{}, nn::Linear<16, 3>{}};
constexpr nn::Sequential net_b{kiln::input<20>, nn::Linear<20, 32>{}, nn::BatchNorm1d<32>{}, nn::ReLU{},
                               nn::Dropout{0.2f}, nn::Linear<32, 3>{}};

// Runs the 20 steps of `config` with `make_optimizer` and `loss`, checking each step's loss and lr, and the
// state after the first and the last step.
template <class Net, class MakeOptimizer, class Loss, class AfterBackward = std::nullptr_t>
void check_trajectory(const std::string& config, const Net& net, MakeOptimizer make_optimizer, const Loss& loss,
                      AfterBackward after_backward = nullptr) {
  const kiln::TensorFile g = train_golden("optim_" + config);
  const std::uint64_t seed = g.metadata.contains("dropout_seed") ? std::stoull(g.metadata.at("dropout_seed")) : 0;
  kiln::Model model{net, seed};
  model.load_state_dict(with_prefix(g, "init."));
  model.train();
  auto opt_and_schedule = make_optimizer(model);
  auto& opt = *opt_and_schedule.first;
  const Tensor& x = g.tensors.at("X");
  const Tensor& y = g.tensors.contains("y") ? g.tensors.at("y") : g.tensors.at("y_float");
  for (int step = 0; step < 20; ++step) {
    INFO(config << " step " << step);
    CHECK(opt.lr == Approx(g.tensors.at("lr")[step]).epsilon(1e-6));
    opt.zero_grad();
    const double l = model.forward_backward(x, y, loss);
    CHECK(l == Approx(g.tensors.at("loss")[step]).epsilon(1e-4));
    if constexpr (!std::is_same_v<AfterBackward, std::nullptr_t>) after_backward(opt, g, step);
    opt.step();
    if (opt_and_schedule.second) opt_and_schedule.second();
    if (step == 0)
      for (const auto& [k, t] : with_prefix(g, "step1."))
        if (t.dtype() == kiln::DType::float32) check_close(model.state_dict().at(k), t, config + " after step 1: " + k, 1e-4, 1e-6);
  }
  const auto state = model.state_dict();
  for (const auto& [k, t] : with_prefix(g, "final.")) {
    if (t.dtype() == kiln::DType::int64) {
      INFO(k);
      CHECK(state.at(k).data_i64()[0] == t.data_i64()[0]);
    } else {
      check_close(state.at(k), t, config + " after 20 steps: " + k, 1e-4, 1e-6);
    }
  }
}

template <class O>
auto plain(O* o) {
  return std::pair<std::unique_ptr<O>, std::function<void()>>{o, nullptr};
}

}  // namespace

TEST_CASE("training: CrossEntropyLoss and MSELoss values and gradients match PyTorch", "[training]") {
  const kiln::TensorFile g = train_golden("losses");
  static constexpr nn::Sequential identity{kiln::input<10>, nn::Flatten{}};
  kiln::Model model{identity};
  const Tensor& logits = g.tensors.at("logits");
  Tensor grad;
  auto check = [&](const std::string& name, double value) {
    INFO(name);
    CHECK(value == Approx(g.tensors.at(name + ".loss")[0]).epsilon(1e-5));
    check_close(grad, g.tensors.at(name + ".grad"), name + " gradient");
  };
  check("ce_mean", model.forward_backward(logits, g.tensors.at("targets"), nn::CrossEntropyLoss{}, nullptr, &grad));
  check("ce_sum", model.forward_backward(logits, g.tensors.at("targets"), nn::CrossEntropyLoss{.reduction = nn::Reduction::sum}, nullptr, &grad));
  check("ce_smooth", model.forward_backward(logits, g.tensors.at("targets"), nn::CrossEntropyLoss{.label_smoothing = 0.1f}, nullptr, &grad));
  check("mse_mean", model.forward_backward(logits, g.tensors.at("float_targets"), nn::MSELoss{}, nullptr, &grad));
  check("mse_sum", model.forward_backward(logits, g.tensors.at("float_targets"), nn::MSELoss{.reduction = nn::Reduction::sum}, nullptr, &grad));

  Tensor bad({64}, kiln::DType::int64);
  bad.data_i64()[5] = 10;
  CHECK_THROWS_WITH(model.forward_backward(logits, bad, nn::CrossEntropyLoss{}), Catch::Contains("target 10 of sample 5 is not a class in [0, 10)"));
  CHECK_THROWS_WITH(model.forward_backward(logits, Tensor({64}), nn::CrossEntropyLoss{}), Catch::Contains("targets must be I64 [64]"));
  CHECK_THROWS_WITH(model.forward_backward(logits, Tensor({64, 9}), nn::MSELoss{}), Catch::Contains("targets must be F32 [64, 10]"));
}

TEST_CASE("training: SGD, with momentum, dampening, nesterov and weight decay, matches torch.optim.SGD", "[training]") {
  check_trajectory("sgd_plain", net_a, [](auto& m) { return plain(new optim::SGD(m, {.lr = 0.1})); }, nn::CrossEntropyLoss{});
  check_trajectory("sgd_momentum", net_a, [](auto& m) {
    return plain(new optim::SGD(m, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 1e-3}));
  }, nn::CrossEntropyLoss{});
  check_trajectory("sgd_nesterov", net_a, [](auto& m) {
    return plain(new optim::SGD(m, {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}));
  }, nn::CrossEntropyLoss{});
}

TEST_CASE("training: Adam and AdamW match torch.optim", "[training]") {
  check_trajectory("adam", net_a, [](auto& m) { return plain(new optim::Adam(m, {.lr = 1e-2, .weight_decay = 1e-3})); },
                   nn::CrossEntropyLoss{});
  check_trajectory("adamw", net_a, [](auto& m) { return plain(new optim::AdamW(m, {.lr = 1e-2, .weight_decay = 1e-2})); },
                   nn::CrossEntropyLoss{});
}

TEST_CASE("training: Adam's step on parameters of several chunks is torch's formula, the same bits on 1 and 2 threads",
          "[training]") {
  // 201 x 199 weights: three of the optimizer's chunks of 16384 elements, the last ending in a partial vector.
  static constexpr nn::Sequential net{kiln::input<201>, nn::Linear<201, 199>{}};
  auto run = [](int threads) {
    kiln::set_num_threads(threads);
    kiln::Model model{net, 3};
    optim::Adam opt{model, {.lr = 1e-2, .weight_decay = 1e-3}};
    for (int step = 0; step < 2; ++step) {
      for (kiln::Parameter& p : opt.params()) {
        kiln::index_t i = 0;
        for (float& g : p.grad.values()) g = static_cast<float>((i++ * 7919 + step * 31) % 2001) / 1000.0f - 1.0f;
      }
      opt.step();
    }
    kiln::set_num_threads(1);
    return model.state_dict().at("0.weight").clone();
  };
  const Tensor one = run(1), two = run(2);
  CHECK(std::memcmp(one.data(), two.data(), one.nbytes()) == 0);
  // torch.optim.Adam, element by element in double.
  kiln::Model start{net, 3};
  const Tensor w0 = start.state_dict().at("0.weight");
  double worst = 0;
  for (kiln::index_t i = 0; i < w0.numel(); ++i) {
    double p = w0[i], m = 0, v = 0;
    for (int step = 0; step < 2; ++step) {
      const double g = static_cast<float>((i * 7919 + step * 31) % 2001) / 1000.0f - 1.0f + 1e-3 * p;
      m = 0.9 * m + 0.1 * g;
      v = 0.999 * v + 0.001 * g * g;
      const double t = step + 1;
      p -= 1e-2 / (1 - std::pow(0.9, t)) * m / (std::sqrt(v) / std::sqrt(1 - std::pow(0.999, t)) + 1e-8);
    }
    worst = std::max(worst, std::abs(two[i] - p) / (1e-5 * std::abs(p) + 1e-6));
  }
  CHECK(worst <= 1.0);  // within 1e-5 relative (1e-6 absolute) for every element
}

TEST_CASE("training: gradient clipping and learning-rate schedules match PyTorch", "[training]") {
  std::unique_ptr<optim::CosineAnnealingLR> cosine;
  check_trajectory("adam_clip_cosine", net_a, [&](auto& m) {
    auto* opt = new optim::Adam(m, {.lr = 1e-2});
    cosine = std::make_unique<optim::CosineAnnealingLR>(*opt, 20);
    return std::pair<std::unique_ptr<optim::Adam>, std::function<void()>>{opt, [&] { cosine->step(); }};
  }, nn::CrossEntropyLoss{}, [](optim::Optimizer& opt, const kiln::TensorFile& g, int step) {
    CHECK(optim::clip_grad_norm(opt, 0.5) == Approx(g.tensors.at("total_norm")[step]).epsilon(1e-4));
  });
  std::unique_ptr<optim::StepLR> steplr;
  check_trajectory("sgd_steplr", net_a, [&](auto& m) {
    auto* opt = new optim::SGD(m, {.lr = 0.1, .momentum = 0.9});
    steplr = std::make_unique<optim::StepLR>(*opt, 5, 0.5);
    return std::pair<std::unique_ptr<optim::SGD>, std::function<void()>>{opt, [&] { steplr->step(); }};
  }, nn::CrossEntropyLoss{});
}

TEST_CASE("training: label smoothing, sum reduction and MSE trajectories match PyTorch", "[training]") {
  check_trajectory("ce_smoothing", net_a, [](auto& m) { return plain(new optim::SGD(m, {.lr = 0.1})); },
                   nn::CrossEntropyLoss{.label_smoothing = 0.1f});
  check_trajectory("ce_sum", net_a, [](auto& m) { return plain(new optim::SGD(m, {.lr = 0.01})); },
                   nn::CrossEntropyLoss{.reduction = nn::Reduction::sum});
  check_trajectory("mse", net_a, [](auto& m) { return plain(new optim::SGD(m, {.lr = 0.1})); }, nn::MSELoss{});
}

TEST_CASE("training: BatchNorm and Dropout train step for step (running stats, masks per step)", "[training]") {
  check_trajectory("bn_dropout", net_b, [](auto& m) { return plain(new optim::SGD(m, {.lr = 0.1, .momentum = 0.9})); },
                   nn::CrossEntropyLoss{});
}

TEST_CASE("training: a NaN gradient makes clip_grad_norm's total and every gradient NaN, as in PyTorch", "[training]") {
  kiln::Model model{net_a, 3};
  optim::SGD opt(model, {.lr = 0.1});
  Tensor x({4, 10}), y({4}, kiln::DType::int64);
  for (kiln::index_t i = 0; i < x.numel(); ++i) x.data()[i] = 0.1f * static_cast<float>(i % 7);
  x.data()[13] = std::numeric_limits<float>::quiet_NaN();  // sample 1
  for (kiln::index_t r = 0; r < 4; ++r) y.data_i64()[r] = r % 3;
  model.forward_backward(x, y, nn::CrossEntropyLoss{});
  CHECK(std::isnan(optim::clip_grad_norm(opt, 1.0)));
  for (const auto& [name, grad] : model.gradients())
    for (const float v : grad.values()) {
      INFO(name);
      REQUIRE(std::isnan(v));  // torch.clamp(NaN, max=1) is NaN, and every gradient is multiplied by it
    }
}

TEST_CASE("training: gradients accumulate until zeroed, runs are bit-reproducible for a thread count", "[training]") {
  // 4096 rows (the golden batch repeated): enough work for the kernel to use both threads.
  const kiln::TensorFile g = train_golden("optim_bn_dropout");
  const Tensor& x32 = g.tensors.at("X");
  const Tensor& y32 = g.tensors.at("y");
  Tensor x({4096, 20}), y({4096}, kiln::DType::int64);
  for (kiln::index_t r = 0; r < 4096; ++r) {
    std::memcpy(x.data() + r * 20, x32.data() + (r % 32) * 20, 20 * sizeof(float));
    y.data_i64()[r] = y32.data_i64()[r % 32];
  }
  auto grads_with = [&](int threads, int calls) {
    kiln::set_num_threads(threads);
    kiln::Model model{net_b, 7};
    for (int c = 0; c < calls; ++c) {
      model.set_step(0);
      model.forward_backward(x, y, nn::CrossEntropyLoss{});
    }
    return model.gradients();
  };
  const auto once = grads_with(1, 1), twice = grads_with(1, 2), threaded = grads_with(2, 1), again = grads_with(2, 1);
  // Two calls on 2 threads: the second worker's buffer must start the second call at zero again.
  const auto twice_threaded = grads_with(2, 2);
  kiln::set_num_threads(1);
  for (const auto& [k, t] : once) {
    Tensor doubled = t.clone();
    for (float& v : doubled.values()) v *= 2;
    check_close(twice.at(k), doubled, k + " accumulated twice");
    check_close(twice_threaded.at(k), doubled, k + " accumulated twice on 2 threads");
    check_close(threaded.at(k), t, k + " on 2 threads");  // other tiles, other summation order
    INFO(k);
    CHECK(std::memcmp(threaded.at(k).data(), again.at(k).data(), t.nbytes()) == 0);
  }
}

// d/dθ of sum(output * g) against (L(θ + h) - L(θ - h)) / 2h for every parameter (7 entries each) and the
// first input (every 5th entry), in train mode (BatchNorm through the batch statistics, Dropout with its fixed
// mask: each evaluation is a fresh model at step 0).
template <kiln::Network Net, class... X>
void check_finite_differences(const Net& net, const Tensor& g, Tensor x1, X... more) {
  kiln::Model model{net, 5};
  const kiln::TensorMap initial = model.state_dict();
  auto objective = [&](const kiln::TensorMap& state) {
    kiln::Model m{net, 5};
    m.load_state_dict(state);
    const Tensor y = m(x1, more...);
    double s = 0;
    for (kiln::index_t i = 0; i < y.numel(); ++i) s += static_cast<double>(y[i]) * g[i];
    return s;
  };
  Tensor dx1, dx2;
  if constexpr (sizeof...(X) == 1) model.backward(x1, more..., g, &dx1, &dx2);
  else model.backward(x1, g, &dx1);
  const kiln::TensorMap grads = model.gradients();
  for (const auto& [name, grad] : grads) {
    for (kiln::index_t k = 0; k < grad.numel(); k += std::max<kiln::index_t>(1, grad.numel() / 7)) {
      kiln::TensorMap plus = initial, minus = initial;
      plus.at(name) = initial.at(name).clone();
      minus.at(name) = initial.at(name).clone();
      const float h = 1e-2f * std::max(1.0f, std::abs(initial.at(name)[k]));
      plus.at(name)[k] += h;
      minus.at(name)[k] -= h;
      const double numeric = (objective(plus) - objective(minus)) / (2.0 * h);
      INFO(name << "[" << k << "]: backward " << grad[k] << ", finite difference " << numeric);
      CHECK(std::abs(grad[k] - numeric) <= 2e-3 * std::max(1.0, std::abs(numeric)));
    }
  }
  for (kiln::index_t k = 0; k < x1.numel(); k += 5) {
    const float keep = x1[k];
    x1[k] = keep + 1e-2f;
    const double up = objective(initial);
    x1[k] = keep - 1e-2f;
    const double down = objective(initial);
    x1[k] = keep;
    const double numeric = (up - down) / 2e-2;
    INFO("x1[" << k << "]: backward " << dx1[k] << ", finite difference " << numeric);
    CHECK(std::abs(dx1[k] - numeric) <= 2e-3 * std::max(1.0, std::abs(numeric)));
  }
}

Tensor wave(kiln::Shape shape, float frequency, float phase = 0) {
  Tensor t(std::move(shape));
  for (kiln::index_t i = 0; i < t.numel(); ++i) t[i] = std::sin(frequency * static_cast<float>(i) + phase);
  return t;
}

TEST_CASE("training: gradients agree with central finite differences", "[training][gradients]") {
  // Every kind of layer with parameters.
  static constexpr nn::Sequential net{kiln::input<6>,        kiln::input<5>,         nn::Bilinear<6, 5, 8>{},
                                      nn::LayerNorm<8>{},    nn::Tanh{},             nn::Linear<8, 12>{},
                                      nn::BatchNorm1d<12>{}, nn::Sigmoid{},          nn::Dropout{0.25f},
                                      nn::Unflatten<1, 3, 4>{}, nn::RMSNorm<4>{.eps = 1e-3f}, nn::Flatten{},
                                      nn::Linear<12, 4>{},   nn::Softmax<1>{}};
  const kiln::index_t n = 7;
  check_finite_differences(net, wave({n, 4}, 0.3f, 1.0f), wave({n, 6}, 1.7f), wave({n, 5}, 0.9f, 1.5707964f));
}

TEST_CASE("training: gradients through Residual, Sum and Concat agree with central finite differences",
          "[training][gradients][graph]") {
  // Paths that meet: a skip around a batch-statistics BatchNorm (the skip crosses the kernel's split, its
  // gradient summed over two segments), a Sum whose branches hold a Dropout and a nested Residual, a Concat
  // along dim 1 with the input itself as a branch, a Residual whose body is a view (y = 2x).
  static constexpr nn::Sequential net{
      kiln::input<3, 4>,
      nn::Concat{nn::dim<1>, nn::Identity{}, nn::Sequential{nn::Linear<4, 4>{}, nn::Tanh{}}},  // [6, 4]
      nn::Flatten{},
      nn::Residual{nn::Linear<24, 16>{}, nn::BatchNorm1d<16>{}, nn::SiLU{}, nn::Linear<16, 24>{}},
      nn::Sum{nn::Sequential{nn::Linear<24, 10>{}, nn::Dropout{0.3f}},
              nn::Sequential{nn::Residual{nn::LayerNorm<24>{}, nn::Linear<24, 24>{}}, nn::Linear<24, 10>{}},
              nn::Linear<24, 10, false>{}},
      nn::Residual{nn::Identity{}},
      nn::Concat{nn::GELU{}, nn::Sequential{nn::BatchNorm1d<10>{}, nn::Sigmoid{}}},
      nn::Linear<20, 4>{},
      nn::Softmax<-1>{}};
  const kiln::index_t n = 7;
  check_finite_differences(net, wave({n, 4}, 0.3f, 1.0f), wave({n, 3, 4}, 1.7f));
}
