// One Fashion-MNIST training epoch in Kiln: the same network, optimizer, loss and batches as
// samples/train_fashion_mnist.cpp, timed per epoch (median of --epochs). bench/train_vs_pytorch.sh runs it
// beside bench/train_epoch_pytorch.py and prints the ratio.
//
//   kiln_train_epoch --batch 64 --threads 1 --epochs 3
#include "timing.hpp"

#include <kiln/kiln.hpp>

#include <chrono>

namespace nn = kiln::nn;

constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{},     nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{},             nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

int main(int argc, char** argv) try {
  kiln::index_t batch = 64;
  int threads = 1, epochs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--batch") batch = std::stol(argv[i + 1]);
    else if (a == "--threads") threads = std::stoi(argv[i + 1]);
    else if (a == "--epochs") epochs = std::stoi(argv[i + 1]);
    else throw kiln::Error("unknown option " + a);
  }
  kiln::set_num_threads(threads);
  const kiln::LabelledImages train = kiln::load_fashion_mnist(true);
  kiln::Model model{net, 1};
  kiln::optim::AdamW opt{model, {.lr = 2e-3, .weight_decay = 1e-4}};
  kiln::BatchLoader loader{train.images, train.labels, batch, 7};
  kiln::optim::CosineAnnealingLR schedule{opt, static_cast<int>(loader.batches() * epochs)};
  const nn::CrossEntropyLoss loss_fn{.label_smoothing = 0.05f};
  std::vector<double> times;
  kiln::Tensor x, y;
  model.train();
  for (int epoch = 0; epoch < epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    for (kiln::index_t step = 0; step < loader.batches(); ++step) {
      loader.batch(epoch, step, x, y);
      model.zero_grad();
      model.forward_backward(x, y, loss_fn);
      opt.step();
      schedule.step();
    }
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double median = kiln::bench::median(times);
  fmt::print("kiln epoch batch={} threads={}: median {:.3f} s, {:.0f} samples/s (epochs: {:.3f})\n", batch, threads,
             median, static_cast<double>(train.images.size(0)) / median, fmt::join(times, ", "));
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
