// The README's training block (AdamW, a cosine schedule, the batch loader, the fused forward-backward), compiled
// and run on a small synthetic task for one epoch.
//
// samples/check_readme_blocks.py checks that every ```cpp block of README.md appears in a samples/readme_*.cpp
// line for line. Around the block: what it takes as given (`net`, `images`, `labels`, `steps`, `epoch`, the
// batch tensors `x` and `y`), and afterwards a check that the epoch learned the task.
#include <kiln/kiln.hpp>

#include <cmath>

namespace nn = kiln::nn;

// The README's network (its first block).
constexpr nn::Sequential net{kiln::input<1, 28, 28>, nn::Flatten{}, nn::Linear<784, 256>{}, nn::BatchNorm1d<256>{},
                             nn::ReLU{}, nn::Dropout{0.2f}, nn::Linear<256, 10>{}};

int main() {
  // Setup: 2560 images of noise in which class k has a bright band on rows 2k + 4 and 2k + 5.
  const kiln::index_t samples = 2560;
  kiln::Tensor images({samples, 1, 28, 28}), labels({samples}, kiln::DType::int64);
  for (kiln::index_t s = 0; s < samples; ++s) {
    const kiln::index_t k = s % 10;
    labels.data_i64()[s] = k;
    for (kiln::index_t p = 0; p < 28 * 28; ++p) {
      const float noise = 0.5f * std::sin(12.9898f * static_cast<float>(s * 784 + p));
      const kiln::index_t row = p / 28;
      images[s * 784 + p] = noise + (row / 2 == k + 2 ? 1.0f : 0.0f);
    }
  }
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
  for (kiln::index_t s = 0; s < samples; ++s) {
    kiln::index_t best = 0;
    for (kiln::index_t c = 1; c < 10; ++c)
      if (logits[s * 10 + c] > logits[s * 10 + best]) best = c;
    correct += best == labels.data_i64()[s];
  }
  const double accuracy = 100.0 * static_cast<double>(correct) / static_cast<double>(samples);
  fmt::print("{} steps of AdamW: training accuracy {:.1f}%, final learning rate {:.2e} (cosine to 0 at T_max)\n",
             loader.batches(), accuracy, opt.lr);
  return loader.batches() == steps && accuracy >= 90 && std::abs(opt.lr) < 1e-12 ? 0 : 1;
}
