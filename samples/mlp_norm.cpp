// A 10-layer network mixing every normalisation, run fused and one layer at a time.
//
// Kiln fuses the whole network into one kernel: each tile of rows goes through all ten layers while it is in
// cache. This sample checks that the fused kernel and the layer-by-layer evaluator agree, and times both.
#include <kiln/kiln.hpp>

#include <chrono>
#include <cmath>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<512>,       nn::Linear<512, 512>{}, nn::LayerNorm<512>{}, nn::ReLU{},
                             nn::Dropout{0.5f},      nn::Linear<512, 512>{}, nn::BatchNorm1d<512>{}, nn::Tanh{},
                             nn::Linear<512, 512>{}, nn::RMSNorm<512>{},     nn::Sigmoid{}};

int main() {
  fmt::print("{}\n", net);
  kiln::set_num_threads(1);  // both evaluators on one thread: the ratio is what fusion alone gains
  kiln::Model model{net, /*seed=*/3};
  model.eval();
  const kiln::index_t batch = 256;
  kiln::Tensor x({batch, 512}), fused({batch, 512}), unfused({batch, 512});
  for (kiln::index_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.01f * static_cast<float>(i));

  auto time = [](auto&& f) {
    f();  // warm up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) f();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / 20;
  };
  const double fused_us = time([&] { model.forward(x, fused); });
  const double unfused_us = time([&] { model.forward_unfused(x, unfused); });
  double worst = 0;
  for (kiln::index_t i = 0; i < fused.numel(); ++i) worst = std::max(worst, std::abs(static_cast<double>(fused[i] - unfused[i])));
  fmt::print("batch {}: fused {:.0f} us, layer by layer {:.0f} us ({:.2f}x), {:.1f} GFLOP/s fused, {} thread\n", batch,
             fused_us, unfused_us, unfused_us / fused_us,
             static_cast<double>(kiln::flops_per_sample(net) * batch) / fused_us / 1e3, kiln::get_num_threads());
  fmt::print("largest difference between the two: {:.2e}\n", worst);
  return worst <= 1e-5 ? 0 : 1;
}
