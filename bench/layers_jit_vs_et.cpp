// kiln_layers_jit_vs_et: single layers and short chains that the networks of kiln_vs_torch do not isolate, each
// through the expression-template kernel (Model::forward) and the MLIR JIT kernel (kiln::jit), one thread. Prints,
// per case and batch, the best of 7 timed loops of each in us and the JIT's time over the ET kernel's (issue 15,
// item 3: the two backends within 1.15x of each other), as a Markdown table.
//
//   kiln_layers_jit_vs_et [batch ...]      (default: 1 2 3 32 256 4096)
//
// `bench_env 1` (common.sh) runs it as the other benchmarks, with glibc's thresholds raised, so that the JIT
// kernel's per-call buffers of large batches are not mapped afresh on every call.
#include "timing.hpp"

#include <kiln/jit.hpp>
#include <kiln/kiln.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace {

namespace nn = kiln::nn;
using kiln::index_t;

using kiln::bench::best_us;

std::string us(double v) { return fmt::format("{:.{}f}", v, v < 1 ? 3 : v < 100 ? 2 : 0); }

kiln::Tensor batch_of(index_t batch, kiln::Dims dims) {
  kiln::Shape shape{batch};
  for (int k = 0; k < dims.rank; ++k) shape.push_back(dims.sizes[k]);
  return kiln::Tensor(shape);
}

template <class Net>
void run(const char* name, const Net& net, const std::vector<index_t>& batches) {
  using Traits = kiln::network_traits<Net>;
  auto model = kiln::Model(net);
  model.eval();
  auto kernel = kiln::jit::compile(model);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (index_t batch : batches) {
    kiln::Tensor x = batch_of(batch, Traits::input_dims);
    kiln::Tensor x2 = batch_of(Traits::input_count == 2 ? batch : 0, Traits::input2_dims);
    kiln::Tensor y_et = batch_of(batch, Traits::output_dims);
    kiln::Tensor y_jit = batch_of(batch, Traits::output_dims);
    for (float& v : x.values()) v = normal(rng);
    for (float& v : x2.values()) v = normal(rng);
    const double values = static_cast<double>(x.numel() + x2.numel()) + static_cast<double>(y_et.numel());
    const int iterations = static_cast<int>(std::clamp(2e6 / values, 3.0, 100000.0));
    double et = 0, jit = 0;
    if constexpr (Traits::input_count == 2) {
      et = best_us([&] { model.forward(x, x2, y_et); }, iterations);
      jit = best_us([&] { kernel.forward(x, x2, y_jit); }, iterations);
    } else {
      et = best_us([&] { model.forward(x, y_et); }, iterations);
      jit = best_us([&] { kernel.forward(x, y_jit); }, iterations);
    }
    fmt::print("| {} | {} | {} | {} | {:.2f} |\n", name, batch, us(et), us(jit), jit / et);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<index_t> batches;
  for (int i = 1; i < argc; ++i) batches.push_back(std::atol(argv[i]));
  if (batches.empty()) batches = {1, 2, 3, 32, 256, 4096};
  kiln::set_num_threads(1);
  fmt::print("| case | batch | ET us | JIT us | JIT / ET |\n|---|--:|--:|--:|--:|\n");
  run("LayerNorm<256>", nn::Sequential{kiln::input<256>, nn::LayerNorm<256>{}}, batches);
  run("RMSNorm<256>", nn::Sequential{kiln::input<256>, nn::RMSNorm<256>{}}, batches);
  run("Softmax<-1>, 256", nn::Sequential{kiln::input<256>, nn::Softmax<-1>{}}, batches);
  run("LogSoftmax<-1>, 256", nn::Sequential{kiln::input<256>, nn::LogSoftmax<-1>{}}, batches);
  run("Linear(64, 10), Softmax", nn::Sequential{kiln::input<64>, nn::Linear<64, 10>{}, nn::Softmax<-1>{}}, batches);
  run("Softmax<1> on [64, 32]", nn::Sequential{kiln::input<64, 32>, nn::Softmax<1>{}}, batches);
  run("LogSoftmax<1> on [64, 32]", nn::Sequential{kiln::input<64, 32>, nn::LogSoftmax<1>{}}, batches);
  run("Linear(32, 4)", nn::Sequential{kiln::input<32>, nn::Linear<32, 4>{}}, batches);
  run("Linear(32, 8)", nn::Sequential{kiln::input<32>, nn::Linear<32, 8>{}}, batches);
  run("Linear(512, 512)", nn::Sequential{kiln::input<512>, nn::Linear<512, 512>{}}, batches);
  // The residual MLPs' first Linear of a block, alone and with its GELU: what the GELU costs each kernel.
  run("Linear(256, 512)", nn::Sequential{kiln::input<256>, nn::Linear<256, 512>{}}, batches);
  run("Linear(256, 512), GELU", nn::Sequential{kiln::input<256>, nn::Linear<256, 512>{}, nn::GELU{}}, batches);
  // Elementwise layers with no Linear to fuse into: alone, and before one.
  run("GELU, 256", nn::Sequential{kiln::input<256>, nn::GELU{}}, batches);
  run("ReLU, 8", nn::Sequential{kiln::input<8>, nn::ReLU{}}, batches);
  run("ReLU, 12", nn::Sequential{kiln::input<12>, nn::ReLU{}}, batches);
  run("ReLU, 3", nn::Sequential{kiln::input<3>, nn::ReLU{}}, batches);
  run("BatchNorm1d on [32, 3]", nn::Sequential{kiln::input<32, 3>, nn::BatchNorm1d<32>{}}, batches);
  run("Tanh, Linear(64, 64)", nn::Sequential{kiln::input<64>, nn::Tanh{}, nn::Linear<64, 64>{}}, batches);
  // Bilinear whose second input is not a multiple of 16 wide, beside one that is.
  run("Bilinear(64, 48, 32)", nn::Sequential{kiln::input<64>, kiln::input<48>, nn::Bilinear<64, 48, 32>{}}, batches);
  run("Bilinear(64, 40, 32)", nn::Sequential{kiln::input<64>, kiln::input<40>, nn::Bilinear<64, 40, 32>{}}, batches);
}
