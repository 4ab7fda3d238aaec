// Small-batch training in Kiln: a 64-128-64-10 MLP with LayerNorm, Tanh and Dropout, batch 32, AdamW, one
// thread, on the synthetic data set of small_batch_data.hpp; timed per epoch (512 steps; median of --epochs).
// bench/train_vs_pytorch.sh runs it beside bench/train_small_batch_pytorch.py and prints the ratio.
//
//   kiln_train_small_batch --epochs 5
#include "small_batch_data.hpp"
#include "timing.hpp"

#include <chrono>
#include <vector>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<64>,      nn::Linear<64, 128>{}, nn::LayerNorm<128>{}, nn::Tanh{},
                             nn::Dropout{0.1f},    nn::Linear<128, 64>{}, nn::LayerNorm<64>{},  nn::Tanh{},
                             nn::Dropout{0.1f},    nn::Linear<64, 10>{}};

// What a step's Dropout masks cost to draw: both Dropouts' elements (batch x 128 and batch x 64) through the
// training forward's dropout_forward, timed alone; the median of 5 timings of 2000 steps. (The backward reads the
// masks off the forward's outputs where those tell them: after Tanh, everywhere.)
double dropout_draws_us(kiln::index_t batch) {
  const std::vector<float> x(static_cast<std::size_t>(batch * 128), 0.5f);
  std::vector<float> y(x.size());
  std::vector<double> times;
  for (int r = 0; r < 5; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (std::uint32_t step = 0; step < 2000; ++step) {
      kiln::et::dropout_forward(x.data(), y.data(), batch * 128, 0, 0.1f, kiln::DropoutStream(1, 0, step));
      kiln::et::dropout_forward(x.data(), y.data(), batch * 64, 0, 0.1f, kiln::DropoutStream(1, 1, step));
    }
    times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / 2000);
  }
  return kiln::bench::median(times);
}

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
  const double median = kiln::bench::median(times);
  const double step_us = median / static_cast<double>(loader.batches()) * 1e6;
  fmt::print("kiln small-batch epoch ({} steps of {}): median {:.4f} s, {:.1f} us/step, last loss {:.4f} (epochs: {:.4f})\n",
             loader.batches(), batch, median, step_us, last_loss, fmt::join(times, ", "));
  const double draws = dropout_draws_us(batch);
  fmt::print("  Dropout's random numbers: {:.2f} us per step, {:.1f}% of a step\n", draws, 100 * draws / step_us);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
