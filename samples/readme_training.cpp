// The README's training block (AdamW, a cosine schedule, the batch loader, the fused forward-backward), compiled
// and run on a small synthetic task for one epoch.
//
// samples/check_readme_blocks.py checks that every ```cpp block of README.md appears in a samples/readme_*.cpp
// line for line. Around the block: what it takes as given (`net`, `images`, `labels`, `steps`, `epoch`, the
// batch tensors `x` and `y`), and afterwards a check that the epoch learned the task.
#include "readme_task.hpp"

#include <kiln/kiln.hpp>

#include <cmath>

namespace nn = kiln::nn;

// The README's network (its first block).
constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

int main() {
  const auto [images, labels] = samples::band_task();  // readme_task.hpp
  const kiln::index_t count = images.size(0);
  const int steps = 40;  // one epoch of batches of 64: the schedule's T_max
  const kiln::index_t epoch = 0;
  kiln::Tensor x, y;

  // ---- README.md, the training block, verbatim.
kiln::Model model{net, /*seed=*/2024};
kiln::optim::AdamW opt{model, {.lr = 2e-3, .weight_decay = 1e-4}};
kiln::optim::CosineAnnealingLR schedule{opt, /*T_max=*/steps};
kiln::BatchLoader loader{images, labels, /*batch_size=*/64, /*seed=*/7};
for (kiln::index_t step = 0; step < loader.batches(); ++step) {
  loader.batch(epoch, step, x, y);
  model.zero_grad();
  double loss = model.forward_backward(x, y, nn::CrossEntropyLoss{.label_smoothing = 0.05f});
  opt.step();
  schedule.step();
}
  // ---- end of the block.

  model.eval();
  const kiln::Tensor logits = model(images);
  kiln::index_t correct = 0;
  for (kiln::index_t s = 0; s < count; ++s) {
    kiln::index_t best = 0;
    for (kiln::index_t c = 1; c < 10; ++c)
      if (logits[s * 10 + c] > logits[s * 10 + best]) best = c;
    correct += best == labels.data_i64()[s];
  }
  const double accuracy = 100.0 * static_cast<double>(correct) / static_cast<double>(count);
  fmt::print("{} steps of AdamW: training accuracy {:.1f}%, final learning rate {:.2e} (cosine to 0 at T_max)\n",
             loader.batches(), accuracy, opt.lr);
  return loader.batches() == steps && accuracy >= 90 && std::abs(opt.lr) < 1e-12 ? 0 : 1;
}
