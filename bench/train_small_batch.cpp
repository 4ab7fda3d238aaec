// Small-batch training in Kiln: a 64-128-64-10 MLP with LayerNorm, Tanh and Dropout, batch 32, AdamW, one
// thread, on the synthetic data set of small_batch_data.hpp; timed per epoch (512 steps; median of --epochs).
// bench/train_vs_pytorch.sh runs it beside bench/train_small_batch_pytorch.py and prints the ratio.
//
//   kiln_train_small_batch --epochs 5
#include "small_batch_data.hpp"

#include <algorithm>
#include <chrono>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<64>,      nn::Linear<64, 128>{}, nn::LayerNorm<128>{}, nn::Tanh{},
                             nn::Dropout{0.1f},    nn::Linear<128, 64>{}, nn::LayerNorm<64>{},  nn::Tanh{},
                             nn::Dropout{0.1f},    nn::Linear<64, 10>{}};

int main(int argc, char** argv) try {
  int epochs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--epochs") epochs = std::stoi(argv[i + 1]);
    else throw kiln::Error("unknown option " + a);
  }
  constexpr kiln::index_t batch = 32;
  kiln::set_num_threads(1);
  kiln::Tensor data, labels;
  kiln::bench::make_small_batch_data(data, labels);
  kiln::Model model{net, 1};
  kiln::optim::AdamW opt{model, {.lr = 1e-3, .weight_decay = 1e-2}};
  kiln::BatchLoader loader{data, labels, batch, 3};
  const nn::CrossEntropyLoss loss_fn{};
  std::vector<double> times;
  kiln::Tensor x, y;
  double last_loss = 0;
  model.train();
  for (int epoch = 0; epoch < epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    for (kiln::index_t step = 0; step < loader.batches(); ++step) {
      loader.batch(epoch, step, x, y);
      model.zero_grad();
      last_loss = model.forward_backward(x, y, loss_fn);
      opt.step();
    }
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  fmt::print("kiln small-batch epoch ({} steps of {}): median {:.4f} s, {:.1f} us/step, last loss {:.4f} (epochs: {:.4f})\n",
             loader.batches(), batch, median, median / static_cast<double>(loader.batches()) * 1e6, last_loss,
             fmt::join(times, ", "));
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
